// C++ test of the torch-free math and CPU kernels (run by ctest). No framework: each CHECK
// prints the failing expression and the run exits non-zero if any failed.
#include <cmath>
#include <cstdio>
#include <vector>

#include "flamekit/cpu_kernels.h"
#include "flamekit/raster_math.h"

namespace {

int failures = 0;
int checks = 0;

#define CHECK(cond)                                                          \
  do {                                                                       \
    ++checks;                                                                \
    if (!(cond)) {                                                           \
      ++failures;                                                            \
      std::printf("FAILED %s:%d: %s\n", __FILE__, __LINE__, #cond);          \
    }                                                                        \
  } while (0)

using namespace flamekit;

void test_pixel_centers() {
  CHECK(pixel_center<double>(0, 4) == -0.75);
  CHECK(pixel_center<double>(3, 4) == 0.75);
  CHECK(pixel_center<float>(1, 2) == 0.5f);
}

void test_depth_key_order() {
  const float values[] = {-1.0f, -0.5f, -1e-30f, 0.0f, 1e-30f, 0.25f, 1.0f};
  for (int i = 0; i + 1 < 7; ++i) CHECK(float_order_key(values[i]) < float_order_key(values[i + 1]));
  // equal depth: the lower triangle id wins the minimum
  CHECK(pack_fragment(0.5f, 3) < pack_fragment(0.5f, 4));
  CHECK(pack_fragment(0.25f, 9) < pack_fragment(0.5f, 1));
  CHECK(fragment_triangle(pack_fragment(-0.3f, 77)) == 77u);
}

void test_setup_rejects_invalid_triangles() {
  const float a[4] = {-0.5f, -0.5f, 0.f, 1.f}, b[4] = {0.5f, -0.5f, 0.f, 1.f},
              c[4] = {0.f, 0.5f, 0.f, 1.f}, behind[4] = {0.f, 0.5f, 0.f, -1.f};
  TriangleSetup<float> ok = setup_triangle(a, b, c, 8, 8);
  CHECK(ok.x0 <= ok.x1 && ok.y0 <= ok.y1);
  TriangleSetup<float> back = setup_triangle(a, b, behind, 8, 8);
  CHECK(back.x0 > back.x1);
  TriangleSetup<float> degenerate = setup_triangle(a, b, b, 8, 8);
  CHECK(degenerate.x0 > degenerate.x1);
  const float nan_v[4] = {NAN, 0.f, 0.f, 1.f};
  CHECK(setup_triangle(a, b, nan_v, 8, 8).x0 > setup_triangle(a, b, nan_v, 8, 8).x1);
}

// A quad split along its diagonal, which passes exactly through the pixel centres (i, i):
// every pixel inside is covered exactly once, and the barycentrics reproduce the ndc
// position.
void test_cpu_pipeline_quad() {
  const int H = 8, W = 8, V = 4, F = 2;
  const float lo = -0.8f, hi = 0.8f;  // between pixel centres: covers rows/cols 1..6
  const float pos[V * 4] = {lo, lo, 0.1f, 1.f, hi, lo, 0.1f, 1.f, hi, hi, 0.1f, 1.f,
                            lo, hi, 0.1f, 1.f};
  const int32_t tri[F * 3] = {0, 1, 2, 0, 2, 3};
  std::vector<TriangleSetup<float>> setups(F);
  std::vector<float> rast(H * W * 4, -1.f);
  std::vector<VertexNdc<float>> ndc(V);
  cpu::raster_vertex_ndc(pos, ndc.data(), 0, V);
  cpu::raster_setup(pos, ndc.data(), tri, V, F, H, W, setups.data(), 0, F);
  cpu::raster_band(setups.data(), F, H, W, rast.data(), 0, H);
  int covered = 0;
  for (int t = 0; t < F; ++t) {
    std::vector<uint64_t> single(H * W, kEmptyFragment);
    cpu::raster_rows(setups.data() + t, 1, H, W, single.data(), 0, H);
    for (int p = 0; p < H * W; ++p) covered += single[p] != kEmptyFragment;
  }
  CHECK(covered == 36);  // 6 x 6 pixel centres, each exactly once
  // interpolate the x coordinate and compare with the pixel centre
  float xs[V] = {lo, hi, hi, lo};
  std::vector<float> out(H * W);
  CHECK(cpu::interpolate_forward(xs, false, rast.data(), tri, F, V, 1, H * W, out.data(), 0,
                                 H * W) == 0);
  for (int i = 1; i <= 6; ++i)
    for (int j = 1; j <= 6; ++j) {
      CHECK(rast[(i * W + j) * 4 + 3] > 0.f);
      CHECK(std::fabs(out[i * W + j] - pixel_center<float>(j, W)) < 1e-6f);
      CHECK(std::fabs(rast[(i * W + j) * 4 + 2] - 0.1f) < 1e-7f);
    }
  CHECK(rast[3] == 0.f);  // pixel (0, 0) is background
}

// rast values that are not ids of the index buffer (here: a buffer with one triangle for a
// rast of two) are written as background and counted, never dereferenced.
void test_invalid_triangle_ids_are_counted() {
  const int H = 2, W = 2, V = 3;
  const float rast[H * W * 4] = {0.2f, 0.3f, 0.f, 1.f,  0.2f, 0.3f, 0.f, 2.f,
                                 0.f,  0.f,  0.f, 0.f,  0.2f, 0.3f, 0.f, -1.f};
  const int32_t tri[3] = {0, 1, 2};
  const float attr[V] = {1.f, 2.f, 3.f};
  float out[H * W];
  CHECK(cpu::interpolate_forward(attr, false, rast, tri, 1, V, 1, H * W, out, 0, H * W) == 2);
  CHECK(std::fabs(out[0] - (0.2f * 1.f + 0.3f * 2.f + 0.5f * 3.f)) < 1e-6f);
  CHECK(out[1] == 0.f && out[2] == 0.f && out[3] == 0.f);
  const float grad_out[H * W] = {1.f, 1.f, 1.f, 1.f};
  float grad_attr[V] = {0.f, 0.f, 0.f}, grad_rast[H * W * 4];
  CHECK(cpu::interpolate_backward(attr, false, rast, tri, 1, grad_out, V, 1, H * W, grad_attr,
                                  grad_rast, 0, H * W) == 2);
  CHECK(std::fabs(grad_attr[2] - 0.5f) < 1e-6f && grad_rast[4] == 0.f);
  const float pos[V * 4] = {-1.f, -1.f, 0.f, 1.f, 1.f, -1.f, 0.f, 1.f, 0.f, 1.f, 0.f, 1.f};
  float grad_pos[V * 4] = {};
  CHECK(cpu::raster_backward(pos, tri, 1, rast, grad_rast, V, H, W, grad_pos, 0, H * W) == 2);
}

// fragment_backward against central differences of resolve_fragment, in double.
void test_fragment_backward_matches_finite_differences() {
  double v[3][4] = {{-0.61, -0.42, 0.2, 0.9}, {0.73, -0.35, -0.1, 1.4}, {0.05, 0.8, 0.4, 1.1}};
  const int H = 16, W = 12, i = 7, j = 5;
  const double gb0 = 0.7, gb1 = -1.3, gz = 0.4;
  double grad[3][4];
  fragment_backward(v[0], v[1], v[2], i, j, H, W, gb0, gb1, gz, grad);
  auto loss = [&]() {
    TriangleSetup<double> s = setup_triangle(v[0], v[1], v[2], H, W);
    double b0, b1, z;
    resolve_fragment(s, i, j, H, W, &b0, &b1, &z);
    return gb0 * b0 + gb1 * b1 + gz * z;
  };
  double worst = 0;
  for (int m = 0; m < 3; ++m)
    for (int k = 0; k < 4; ++k) {
      const double saved = v[m][k], h = 1e-6;
      v[m][k] = saved + h;
      const double up = loss();
      v[m][k] = saved - h;
      const double down = loss();
      v[m][k] = saved;
      worst = std::fmax(worst, std::fabs((up - down) / (2 * h) - grad[m][k]));
    }
  CHECK(worst < 1e-7);
}

void test_sh_basis_and_gradient() {
  double Y[9];
  sh_basis(0.0, 0.0, 1.0, Y);
  const double pi = 3.14159265358979323846;
  CHECK(std::fabs(Y[0] - 1.0 / std::sqrt(4 * pi)) < 1e-15);
  CHECK(std::fabs(Y[3] - (2 * pi / 3) * std::sqrt(3 / (4 * pi))) < 1e-14);
  CHECK(std::fabs(Y[8] - 2 * (pi / 4) * 0.5 * std::sqrt(5 / (4 * pi))) < 1e-14);
  const double coef[9] = {0.3, -0.2, 0.5, 0.7, -0.4, 0.25, 0.6, -0.9, 0.35};
  double n[3] = {0.3, -0.5, 0.8}, gn[3];
  sh_basis_backward(n[0], n[1], n[2], coef, gn);
  for (int d = 0; d < 3; ++d) {
    double up[9], down[9], saved = n[d], h = 1e-6, f_up = 0, f_down = 0;
    n[d] = saved + h;
    sh_basis(n[0], n[1], n[2], up);
    n[d] = saved - h;
    sh_basis(n[0], n[1], n[2], down);
    n[d] = saved;
    for (int k = 0; k < 9; ++k) {
      f_up += coef[k] * up[k];
      f_down += coef[k] * down[k];
    }
    CHECK(std::fabs((f_up - f_down) / (2 * h) - gn[d]) < 1e-8);
  }
}

// The edge function of a shared edge is exactly negated when the edge is reversed, which
// the fill rule relies on.
void test_shared_edge_antisymmetry() {
  const float xs[3] = {0.137f, -0.731f, 0.2f}, ys[3] = {0.911f, -0.05f, 0.3f},
              ws[3] = {1.3f, 0.77f, 1.0f};
  for (int p = 0; p < 50; ++p) {
    const float px = pixel_center<float>(p, 50), py = pixel_center<float>(49 - p, 50);
    const float a0 = xs[0] - ws[0] * px, b0 = ys[0] - ws[0] * py;
    const float a1 = xs[1] - ws[1] * px, b1 = ys[1] - ws[1] * py;
    CHECK(edge_value(a0, b0, a1, b1) == -edge_value(a1, b1, a0, b0));
  }
}

// The CPU depth test (vectorized for float32) against shade_fragment applied pixel by pixel.
void test_depth_test_matches_scalar_fragments() {
  const int H = 37, W = 53, F = 300;
  uint32_t state = 12345u;
  auto uniform = [&state]() {
    state = state * 1664525u + 1013904223u;
    return float(state >> 8) / float(1u << 24);
  };
  std::vector<float> pos(F * 3 * 4);
  std::vector<int32_t> tri(F * 3);
  for (int v = 0; v < F * 3; ++v) {
    const float w = 0.5f + 1.5f * uniform();
    pos[v * 4 + 0] = (uniform() * 2.6f - 1.3f) * w;
    pos[v * 4 + 1] = (uniform() * 2.6f - 1.3f) * w;
    pos[v * 4 + 2] = (uniform() * 2.2f - 1.1f) * w;
    pos[v * 4 + 3] = w;
    tri[v] = v;
  }
  std::vector<TriangleSetup<float>> setups(F);
  std::vector<VertexNdc<float>> ndc(F * 3);
  cpu::raster_vertex_ndc(pos.data(), ndc.data(), 0, F * 3);
  cpu::raster_setup(pos.data(), ndc.data(), tri.data(), F * 3, F, H, W, setups.data(), 0, F);
  std::vector<uint64_t> fast(H * W, kEmptyFragment), slow(H * W, kEmptyFragment);
  cpu::raster_rows(setups.data(), F, H, W, fast.data(), 0, H);
  for (int f = 0; f < F; ++f)
    for (int i = 0; i < H; ++i)
      for (int j = 0; j < W; ++j) {
        float z;
        if (shade_fragment(setups[f], pixel_center<float>(j, W), pixel_center<float>(i, H), &z)) {
          const uint64_t packed = pack_fragment(z, uint32_t(f));
          if (packed < slow[i * W + j]) slow[i * W + j] = packed;
        }
      }
  int covered = 0, differ = 0;
  for (int p = 0; p < H * W; ++p) {
    covered += fast[p] != kEmptyFragment;
    differ += fast[p] != slow[p];
  }
  CHECK(covered > H * W / 2);
  CHECK(differ == 0);
}

}  // namespace

int main() {
  test_pixel_centers();
  test_depth_key_order();
  test_setup_rejects_invalid_triangles();
  test_cpu_pipeline_quad();
  test_invalid_triangle_ids_are_counted();
  test_fragment_backward_matches_finite_differences();
  test_sh_basis_and_gradient();
  test_shared_edge_antisymmetry();
  test_depth_test_matches_scalar_fragments();
  std::printf("%d checks, %d failed\n", checks, failures);
  return failures == 0 ? 0 : 1;
}
