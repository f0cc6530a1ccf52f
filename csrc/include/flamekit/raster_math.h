// flamekit/raster_math.h — torch-free math shared by the CPU and CUDA kernels.
//
// Every function here is inline and callable from host and device code, so the CPU
// and CUDA paths evaluate coverage, depth, barycentrics and shading with the same
// sequence of IEEE operations. Both builds disable floating-point contraction
// (gcc: -ffp-contract=off, nvcc: --fmad=false) so the results agree bit for bit.
//
// Conventions (identical to nvdiffrast):
//   * clip-space vertex p = (x, y, z, w); ndc = xyz / w.
//   * pixel (row i, col j) has its centre at x = (2j+1)/W - 1, y = (2i+1)/H - 1.
//   * homogeneous edge functions: u_i = (p_j x p_k) . P with p = (x, y, w), P = (px, py, 1),
//     (i, j, k) cyclic. Perspective-correct barycentrics are b_i = u_i / (u_0 + u_1 + u_2),
//     and the fragment depth is z_ndc = sum(u_i z_i) / sum(u_i w_i).
//   * a pixel is inside when every u_i has the sign of the triangle's orientation (the sign
//     of its ndc area); a pixel centre exactly on an edge (u_i == 0) belongs to the triangle
//     for which that edge is a "top-left" edge of the oriented edge function. The edge
//     functions of a shared edge are exact negatives of each other, so exactly one of two
//     neighbours covers such a pixel.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define FK_HD __host__ __device__ __forceinline__
#else
#define FK_HD inline
#endif

namespace flamekit {

// ---------------------------------------------------------------------------------------
// Pixel centres
// ---------------------------------------------------------------------------------------

template <typename T>
FK_HD T pixel_center(int index, int size) {
  return T(2 * index + 1) / T(size) - T(1);
}

// ---------------------------------------------------------------------------------------
// Depth packing: 64-bit (depth key, triangle id); the minimum is the nearest fragment and,
// on equal depth, the lower triangle id.
// ---------------------------------------------------------------------------------------

constexpr uint64_t kEmptyFragment = 0xFFFFFFFFFFFFFFFFull;

FK_HD uint32_t float_order_key(float depth) {
  union {
    float f;
    uint32_t u;
  } bits;
  bits.f = depth;
  // Map IEEE floats onto unsigned integers with the same order.
  return (bits.u & 0x80000000u) ? ~bits.u : (bits.u | 0x80000000u);
}

FK_HD uint64_t pack_fragment(float depth, uint32_t triangle) {
  return (uint64_t(float_order_key(depth)) << 32) | uint64_t(triangle);
}

FK_HD uint32_t fragment_triangle(uint64_t packed) { return uint32_t(packed & 0xFFFFFFFFull); }

// ---------------------------------------------------------------------------------------
// Edge functions
//
// u_i = (p_j x p_k) . P is evaluated as det(P, p_j - w_j P, p_k - w_k P), i.e. with
// a_m = x_m - w_m px and b_m = y_m - w_m py:  u_i = a_j b_k - b_j a_k.
// Subtracting before multiplying keeps small triangles far from the image centre accurate
// (the expanded form loses about |x|^2 / area of relative precision), and swapping j and k
// negates the result exactly, which the shared-edge rule relies on.
// ---------------------------------------------------------------------------------------

template <typename T>
FK_HD T edge_value(T aj, T bj, T ak, T bk) {
  return aj * bk - bj * ak;
}

// Top-left rule on an oriented edge direction (inside is where the edge function is > 0):
// c = (c0, c1) is the gradient of the edge function with respect to (px, py).
template <typename T>
FK_HD bool edge_owns_boundary(T c0, T c1) {
  // Bitwise, not short-circuit: the outcome is data-dependent (branches would mispredict).
  return (c0 > T(0)) | ((c0 == T(0)) & (c1 > T(0)));
}

// Per-triangle data the coverage test needs.
template <typename T>
struct TriangleSetup {
  T x[3], y[3], z[3], w[3];  // clip coordinates of the three vertices
  T orientation;             // +1 or -1: makes the edge functions positive inside
  bool owns[3];              // whether edge i owns pixel centres exactly on it
  int x0, x1, y0, y1;        // inclusive pixel bounds; x0 > x1 means "covers nothing"
};

template <typename T>
FK_HD T clamp_value(T v, T lo, T hi) {
  return v < lo ? lo : (v > hi ? hi : v);
}

// Per-vertex part of the triangle setup: the ndc position, and whether the vertex can be
// rasterized at all (w > 0 and finite coordinates). Shared by every triangle of the vertex.
template <typename T>
struct VertexNdc {
  T x, y;
  bool valid;
};

template <typename T>
FK_HD VertexNdc<T> vertex_ndc(const T* v) {
  VertexNdc<T> n;
  n.x = n.y = T(0);
  // NaN fails the comparison too, so non-finite w is rejected here.
  n.valid = v[3] > T(0);
  for (int k = 0; k < 4; ++k) {
    const T a = v[k];
    n.valid = n.valid & (a - a == T(0));  // false for inf or NaN
  }
  if (n.valid) {
    n.x = v[0] / v[3];
    n.y = v[1] / v[3];
  }
  return n;
}

// Builds the setup of one triangle from its three clip-space vertices (x, y, z, w each) and
// their vertex_ndc. Triangles with a vertex at w <= 0, non-finite coordinates or zero area
// are marked empty.
template <typename T>
FK_HD TriangleSetup<T> setup_triangle(const T* v0, const T* v1, const T* v2,
                                      const VertexNdc<T>& n0, const VertexNdc<T>& n1,
                                      const VertexNdc<T>& n2, int H, int W) {
  TriangleSetup<T> s;
  s.x0 = 1;
  s.x1 = 0;
  s.y0 = 1;
  s.y1 = 0;
  s.orientation = T(1);
  const T* v[3] = {v0, v1, v2};
  for (int i = 0; i < 3; ++i) {
    s.x[i] = v[i][0];
    s.y[i] = v[i][1];
    s.z[i] = v[i][2];
    s.w[i] = v[i][3];
    s.owns[i] = false;
  }
  if (!(n0.valid && n1.valid && n2.valid)) return s;
  const T nx[3] = {n0.x, n1.x, n2.x}, ny[3] = {n0.y, n1.y, n2.y};
  // Orientation from the signed ndc area (w > 0, so it has the sign of det(p0, p1, p2)).
  const T area = (nx[1] - nx[0]) * (ny[2] - ny[0]) - (nx[2] - nx[0]) * (ny[1] - ny[0]);
  if (!(area != T(0))) return s;
  s.orientation = area > T(0) ? T(1) : T(-1);
  for (int i = 0; i < 3; ++i) {
    const int j = (i + 1) % 3, k = (i + 2) % 3;
    // d u_i / d(px, py) of p_j x p_k, oriented; exact negatives for a shared edge.
    const T c0 = s.y[j] * s.w[k] - s.w[j] * s.y[k];
    const T c1 = s.w[j] * s.x[k] - s.x[j] * s.w[k];
    s.owns[i] = edge_owns_boundary(s.orientation * c0, s.orientation * c1);
  }
  // Pixel bounding box from the ndc bounding box. The margin of 1/64 pixel covers the
  // rounding of the ndc division (~1e-7 relative) and of the edge functions, so no centre
  // the edge functions accept is left outside; the edge functions decide coverage exactly.
  T xmin = nx[0], xmax = nx[0], ymin = ny[0], ymax = ny[0];
  for (int i = 1; i < 3; ++i) {
    xmin = nx[i] < xmin ? nx[i] : xmin;
    xmax = nx[i] > xmax ? nx[i] : xmax;
    ymin = ny[i] < ymin ? ny[i] : ymin;
    ymax = ny[i] > ymax ? ny[i] : ymax;
  }
  // col j has centre (2j+1)/W - 1, so j = (x + 1) * W / 2 - 0.5
  const T margin = T(1.0 / 64.0);
  const T fx0 = clamp_value((xmin + T(1)) * T(W) * T(0.5) - T(0.5) - margin, T(-2), T(W + 1));
  const T fx1 = clamp_value((xmax + T(1)) * T(W) * T(0.5) - T(0.5) + margin, T(-2), T(W + 1));
  const T fy0 = clamp_value((ymin + T(1)) * T(H) * T(0.5) - T(0.5) - margin, T(-2), T(H + 1));
  const T fy1 = clamp_value((ymax + T(1)) * T(H) * T(0.5) - T(0.5) + margin, T(-2), T(H + 1));
  // ceil / floor of values in [-2, size + 1] via truncation of a shifted positive number
  const int x0 = int(fx0 + T(3)) - 3 + (T(int(fx0 + T(3)) - 3) < fx0 ? 1 : 0);
  const int x1 = int(fx1 + T(3)) - 3;
  const int y0 = int(fy0 + T(3)) - 3 + (T(int(fy0 + T(3)) - 3) < fy0 ? 1 : 0);
  const int y1 = int(fy1 + T(3)) - 3;
  s.x0 = x0 < 0 ? 0 : x0;
  s.x1 = x1 > W - 1 ? W - 1 : x1;
  s.y0 = y0 < 0 ? 0 : y0;
  s.y1 = y1 > H - 1 ? H - 1 : y1;
  return s;
}

template <typename T>
FK_HD TriangleSetup<T> setup_triangle(const T* v0, const T* v1, const T* v2, int H, int W) {
  return setup_triangle(v0, v1, v2, vertex_ndc(v0), vertex_ndc(v1), vertex_ndc(v2), H, W);
}

// The three (unoriented) edge functions u_i at pixel centre P, evaluated in precision A.
template <typename A, typename T>
FK_HD void edge_functions(const T* x, const T* y, const T* w, A px, A py, A* u) {
  A a[3], b[3];
  for (int m = 0; m < 3; ++m) {
    a[m] = A(x[m]) - A(w[m]) * px;
    b[m] = A(y[m]) - A(w[m]) * py;
  }
  for (int i = 0; i < 3; ++i) {
    const int j = (i + 1) % 3, k = (i + 2) % 3;
    u[i] = edge_value(a[j], b[j], a[k], b[k]);
  }
}

// Coverage and depth of one pixel centre for the depth test, in the input precision, from
// a_m = x_m - w_m px (which depends only on the column) and b_m = y_m - w_m py (only on the
// row), so that callers can hoist them out of their pixel loops. Returns true and writes
// the ndc depth when the centre is inside the triangle (fill rule applied) and the depth
// lies in [-1, 1].
template <typename T>
FK_HD bool shade_fragment_ab(const TriangleSetup<T>& s, const T* a, const T* b, T* depth) {
  T u[3];
  bool inside = true;  // evaluated without early exits: cheaper than mispredicted branches
  for (int i = 0; i < 3; ++i) {
    const int j = (i + 1) % 3, k = (i + 2) % 3;
    u[i] = edge_value(a[j], b[j], a[k], b[k]);
    const T ui = s.orientation * u[i];
    inside &= (ui > T(0)) | ((ui == T(0)) & s.owns[i]);
  }
  if (!inside) return false;
  const T nw = (u[0] * s.w[0] + u[1] * s.w[1]) + u[2] * s.w[2];
  if (!(nw != T(0))) return false;
  const T nz = (u[0] * s.z[0] + u[1] * s.z[1]) + u[2] * s.z[2];
  const T z = nz / nw;
  if (!(z >= T(-1) && z <= T(1))) return false;
  *depth = z;
  return true;
}

template <typename T>
FK_HD void row_terms(const TriangleSetup<T>& s, T py, T* b) {
  for (int m = 0; m < 3; ++m) b[m] = s.y[m] - s.w[m] * py;
}

template <typename T>
FK_HD void column_terms(const TriangleSetup<T>& s, T px, T* a) {
  for (int m = 0; m < 3; ++m) a[m] = s.x[m] - s.w[m] * px;
}

template <typename T>
FK_HD bool shade_fragment(const TriangleSetup<T>& s, T px, T py, T* depth) {
  T a[3], b[3];
  column_terms(s, px, a);
  row_terms(s, py, b);
  return shade_fragment_ab(s, a, b, depth);
}

// Perspective-correct barycentrics (b0, b1) and ndc depth of the winning fragment of pixel
// (row i, col j). Evaluated in double whatever T is: a float32 pixel centre is off by up to
// half an ulp, which on a triangle a few pixels wide moves barycentrics by ~1e-5; in double
// the outputs are exact to float32 rounding. Only one evaluation per pixel, so it is cheap.
template <typename T>
FK_HD void resolve_fragment(const TriangleSetup<T>& s, int i, int j, int H, int W, T* b0, T* b1,
                            T* z) {
  const double px = pixel_center<double>(j, W), py = pixel_center<double>(i, H);
  double u[3];
  edge_functions(s.x, s.y, s.w, px, py, u);
  const double sum = (u[0] + u[1]) + u[2];
  const double nw = (u[0] * double(s.w[0]) + u[1] * double(s.w[1])) + u[2] * double(s.w[2]);
  const double nz = (u[0] * double(s.z[0]) + u[1] * double(s.z[1])) + u[2] * double(s.z[2]);
  *b0 = T(u[0] / sum);
  *b1 = T(u[1] / sum);
  *z = T(nz / nw);
}

// Backward of (b0, b1, z_ndc) at pixel (row i, col j) with respect to the clip coordinates
// of the three vertices, evaluated in double (see resolve_fragment). v0..v2 point to
// (x, y, z, w); g_b0, g_b1, g_z are the upstream gradients. Writes grad[m][0..3] =
// dL / d(x, y, z, w) of vertex m. Coverage is held fixed.
template <typename T>
FK_HD void fragment_backward(const T* v0, const T* v1, const T* v2, int i, int j, int H, int W,
                             T g_b0, T g_b1, T g_z, T grad[3][4]) {
  const double px = pixel_center<double>(j, W), py = pixel_center<double>(i, H);
  const T* v[3] = {v0, v1, v2};
  T x[3], y[3], w[3];
  double a[3], b[3], u[3];
  for (int m = 0; m < 3; ++m) {
    x[m] = v[m][0];
    y[m] = v[m][1];
    w[m] = v[m][3];
    a[m] = double(x[m]) - double(w[m]) * px;
    b[m] = double(y[m]) - double(w[m]) * py;
  }
  edge_functions(x, y, w, px, py, u);
  // One reciprocal instead of five divisions (two of them in sequence): double precision
  // leaves the float32 results unchanged but for the last bit.
  const double inv_S = 1.0 / ((u[0] + u[1]) + u[2]);
  const double b0 = u[0] * inv_S, b1 = u[1] * inv_S;
  const double gb0 = double(g_b0), gb1 = double(g_b1), gz = double(g_z);
  // dL/du_i from b_i = u_i / S and z = nz / nw.
  const double G = gb0 * b0 + gb1 * b1;
  double gu[3];
  gu[0] = (gb0 - G) * inv_S;
  gu[1] = (gb1 - G) * inv_S;
  gu[2] = (-G) * inv_S;
  // The depth terms, skipped when no gradient reaches the depth (the common case: shading
  // and attributes depend on the barycentrics only).
  double z = 0, nw = 1;
  if (gz != 0) {
    nw = (u[0] * double(w[0]) + u[1] * double(w[1])) + u[2] * double(w[2]);
    const double nz = (u[0] * double(v0[2]) + u[1] * double(v1[2])) + u[2] * double(v2[2]);
    z = nz / nw;
    for (int k = 0; k < 3; ++k) gu[k] += gz * (double(v[k][2]) - z * double(w[k])) / nw;
  }
  // Vertex m is the first vertex of edge e1 = (m+2)%3 (u = a_m b_{m+1} - b_m a_{m+1}) and
  // the second of edge e2 = (m+1)%3 (u = a_{m+2} b_m - b_{m+2} a_m). u depends on
  // (x_m, y_m, w_m) only through a_m, b_m, hence d/dw_m = -px d/dx_m - py d/dy_m.
  for (int m = 0; m < 3; ++m) {
    const int n1 = (m + 1) % 3, n2 = (m + 2) % 3;
    const double gx = gu[n2] * b[n1] - gu[n1] * b[n2];
    const double gy = gu[n1] * a[n2] - gu[n2] * a[n1];
    grad[m][0] = T(gx);
    grad[m][1] = T(gy);
    grad[m][2] = gz != 0 ? T(gz * u[m] / nw) : T(0);
    grad[m][3] = T(-(px * gx + py * gy) - (gz != 0 ? gz * z * u[m] / nw : 0.0));
  }
}

// The triangle id + 1 stored in a rast pixel, or 0 for background and for any value that is
// not an id of the F triangles (a rast paired with the wrong index buffer, or edited):
// kernels never index past the triangle buffer. Compared as floating point first, because
// converting a huge or NaN value to int is undefined.
template <typename T>
FK_HD int rast_triangle(T stored, int F) {
  return (stored >= T(1) && stored <= T(F)) ? int(stored) : 0;
}

// Whether a rast pixel holds something other than background or a valid id (see above).
template <typename T>
FK_HD bool rast_id_invalid(T stored, int t) {
  return t == 0 && stored != T(0);
}

// Attribute value at a fragment: b2 = 1 - b0 - b1 (computed by the caller once per pixel).
template <typename T>
FK_HD T barycentric_mix(T b0, T b1, T b2, T a0, T a1, T a2) {
  return (b0 * a0 + b1 * a1) + b2 * a2;
}

// ---------------------------------------------------------------------------------------
// Second-order spherical harmonics with the irradiance constants of Ramamoorthi and
// Hanrahan, in the form used by the original FLAME photometric fitting code and DECA:
//   shading_c(n) = sum_k sh[k, c] * a_k * Y_k(n)
//   Y = [1, x, y, z, xy, xz, yz, x^2 - y^2, 3 z^2 - 1]
//   a = [1/sqrt(4 pi), (2 pi / 3) sqrt(3 / (4 pi)) (x3), (pi / 4) 3 sqrt(5 / (12 pi)) (x3),
//        (pi / 4) (3 / 2) sqrt(5 / (12 pi)), (pi / 4) (1 / 2) sqrt(5 / (4 pi))]
// The normal is used as given (callers normalize it).
// ---------------------------------------------------------------------------------------

// Scalars rather than an array: nvcc lets device code read namespace-scope constexpr
// scalars, but not elements of a namespace-scope constexpr array.
constexpr double kShBand0 = 0.28209479177387814;   // 1 / sqrt(4 pi)
constexpr double kShBand1 = 1.0233267079464885;    // (2 pi / 3) * sqrt(3 / (4 pi))
constexpr double kShBand2xy = 0.8580855308097834;  // (pi / 4) * 3 * sqrt(5 / (12 pi))
constexpr double kShBand2x2y2 = 0.4290427654048917;  // (pi / 4) * (3 / 2) * sqrt(5 / (12 pi))
constexpr double kShBand2z2 = 0.24770795610037571;   // (pi / 4) * (1 / 2) * sqrt(5 / (4 pi))

template <typename T>
FK_HD void sh_basis(T x, T y, T z, T* Y) {
  Y[0] = T(kShBand0);
  Y[1] = T(kShBand1) * x;
  Y[2] = T(kShBand1) * y;
  Y[3] = T(kShBand1) * z;
  Y[4] = T(kShBand2xy) * (x * y);
  Y[5] = T(kShBand2xy) * (x * z);
  Y[6] = T(kShBand2xy) * (y * z);
  Y[7] = T(kShBand2x2y2) * (x * x - y * y);
  Y[8] = T(kShBand2z2) * (T(3) * (z * z) - T(1));
}

// Gradient of sum_k coef[k] * Y_k(n) with respect to n = (x, y, z).
template <typename T>
FK_HD void sh_basis_backward(T x, T y, T z, const T* coef, T* gn) {
  const T a1 = T(kShBand1), a4 = T(kShBand2xy), a7 = T(kShBand2x2y2),
          a8 = T(kShBand2z2);
  gn[0] = a1 * coef[1] + a4 * (coef[4] * y + coef[5] * z) + a7 * coef[7] * T(2) * x;
  gn[1] = a1 * coef[2] + a4 * (coef[4] * x + coef[6] * z) - a7 * coef[7] * T(2) * y;
  gn[2] = a1 * coef[3] + a4 * (coef[5] * x + coef[6] * y) + a8 * coef[8] * T(6) * z;
}

}  // namespace flamekit
