// Thin torch binding: validates inputs with messages that name the argument and the fix,
// allocates outputs and workspaces, and dispatches to the torch-free CPU or CUDA kernels.
#include <ATen/Parallel.h>
#include <torch/extension.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <tuple>
#include <vector>

#include "flamekit/cpu_kernels.h"
#include "ops.h"

#ifdef FLAMEKIT_WITH_CUDA
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>

#include "flamekit/cuda_kernels.h"
#endif

namespace flamekit {
namespace {

using torch::Tensor;

constexpr int64_t kPixelGrain = 2048;

std::string shape_of(const Tensor& t) {
  std::ostringstream os;
  os << t.sizes();
  return os.str();
}

void check_float_tensor(const Tensor& t, const char* name, int64_t dims) {
  TORCH_CHECK(t.dim() == dims, name, " must have ", dims, " dimensions, got shape ",
              shape_of(t));
  TORCH_CHECK(t.scalar_type() == torch::kFloat32 || t.scalar_type() == torch::kFloat64, name,
              " must be float32 or float64, got ", t.scalar_type());
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous (call .contiguous() first)");
}

void check_same(const Tensor& t, const Tensor& ref, const char* name, const char* ref_name) {
  TORCH_CHECK(t.device() == ref.device(), name, " is on ", t.device(), " but ", ref_name,
              " is on ", ref.device(), "; move both to the same device");
  TORCH_CHECK(t.scalar_type() == ref.scalar_type(), name, " has dtype ", t.scalar_type(),
              " but ", ref_name, " has dtype ", ref.scalar_type(), "; use one dtype");
}

// Index-range checks need a reduction (and on CUDA a synchronization), so the last index
// buffer that passed is remembered: by a weak reference to its storage (a freed buffer whose
// memory is reused can never match), its offset, version counter and the vertex count.
struct CheckedIndexBuffer {
  c10::weak_intrusive_ptr<c10::StorageImpl> storage{c10::intrusive_ptr<c10::StorageImpl>()};
  const void* data = nullptr;
  uint32_t version = 0;
  int64_t numel = -1, vertices = -1;

  bool matches(const Tensor& tri, int64_t num_vertices) const {
    const auto alive = storage.lock();
    return alive && alive.get() == tri.storage().unsafeGetStorageImpl() &&
           data == tri.data_ptr() && version == tri._version() && numel == tri.numel() &&
           vertices == num_vertices;
  }
};

void check_triangles(const Tensor& tri, const Tensor& ref, int64_t num_vertices,
                     const char* vertex_source) {
  TORCH_CHECK(tri.dim() == 2 && tri.size(1) == 3, "tri must have shape [F,3], got ",
              shape_of(tri));
  TORCH_CHECK(tri.scalar_type() == torch::kInt32, "tri must be int32, got ",
              tri.scalar_type(), " (convert with tri.int())");
  TORCH_CHECK(tri.is_contiguous(), "tri must be contiguous (call .contiguous() first)");
  TORCH_CHECK(tri.device() == ref.device(), "tri is on ", tri.device(), " but ", vertex_source,
              " is on ", ref.device(), "; move both to the same device");
  if (tri.numel() == 0) return;
  static std::mutex mutex;
  static CheckedIndexBuffer last;
  {
    std::lock_guard<std::mutex> lock(mutex);
    if (last.matches(tri, num_vertices)) return;
  }
  const auto [lo, hi] = torch::aminmax(tri);
  const int64_t lo_v = lo.item<int64_t>(), hi_v = hi.item<int64_t>();
  TORCH_CHECK(lo_v >= 0, "tri holds a negative vertex index (", lo_v, ")");
  TORCH_CHECK(hi_v < num_vertices, "tri indexes vertex ", hi_v, " but ", vertex_source, " has ",
              num_vertices, " vertices");
  std::lock_guard<std::mutex> lock(mutex);
  last.storage = tri.storage().getWeakStorageImpl();
  last.data = tri.data_ptr();
  last.version = tri._version();
  last.numel = tri.numel();
  last.vertices = num_vertices;
}

// The kernels index pixels within an image with 32-bit integers.
void check_image_size(const Tensor& image, const char* name) {
  TORCH_CHECK(image.size(1) * image.size(2) < (int64_t(1) << 31), name, " has ",
              image.size(1), " x ", image.size(2), " pixels per image; H * W must be below 2^31");
}

void check_rast(const Tensor& rast, const Tensor& ref, const char* ref_name) {
  check_float_tensor(rast, "rast", 4);
  TORCH_CHECK(rast.size(3) == 4, "rast must have shape [B,H,W,4], got ", shape_of(rast));
  check_image_size(rast, "rast");
  check_same(rast, ref, "rast", ref_name);
}

#ifdef FLAMEKIT_WITH_CUDA
void check_cuda(cudaError_t status, const char* op) {
  TORCH_CHECK(status == cudaSuccess, op, " failed on CUDA: ", cudaGetErrorString(status));
}
#endif

[[noreturn]] void no_cuda() {
  TORCH_CHECK(false,
              "flamekit._C was built without CUDA; rebuild with FLAMEKIT_CUDA=1 "
              "pip install -e . --no-build-isolation on a machine with nvcc and a CUDA torch");
}

// Runs fn(buffer, begin, end) over [0, n) in chunks, each chunk accumulating into its own
// buffer shaped like `out` (zero-initialized by the caller): chunk 0 into `out` itself, the
// others into workspaces each thread zeroes for itself. The workspaces are then added to
// `out` in chunk order, so the result does not depend on scheduling.
template <typename Fn>
void parallel_accumulate(int64_t n, const Tensor& out, Fn fn) {
  const int64_t chunks =
      std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), n / kPixelGrain));
  if (chunks == 1) {
    fn(out, 0, n);
    return;
  }
  std::vector<int64_t> buffer_shape{chunks - 1};
  for (auto s : out.sizes()) buffer_shape.push_back(s);
  Tensor buffers = torch::empty(buffer_shape, out.options());
  at::parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      Tensor target = c == 0 ? out : buffers[c - 1];
      if (c > 0) target.zero_();
      fn(target, c * n / chunks, (c + 1) * n / chunks);
    }
  });
  for (int64_t c = 1; c < chunks; ++c) out.add_(buffers[c - 1]);
}

// A CPU workspace of `bytes` bytes (64-byte aligned). Up to 16 MiB it is kept by the calling
// thread and reused: a fresh allocation of this size comes back as new pages from the kernel
// on every call, and at 224x224 those page faults cost as much as the triangle setup itself.
// Larger workspaces are allocated per call and owned by `holder`.
uint8_t* cpu_workspace(int64_t bytes, Tensor& holder) {
  constexpr int64_t kKeptBytes = int64_t(16) << 20;
  if (bytes > kKeptBytes) {
    holder = torch::empty({bytes + 64}, torch::kUInt8);
  } else {
    thread_local std::vector<uint8_t> kept;
    if (int64_t(kept.size()) < bytes + 64)
      kept.resize(size_t(std::max<int64_t>(bytes + 64, int64_t(1) << 20)));
    const auto address = reinterpret_cast<uintptr_t>(kept.data());
    return reinterpret_cast<uint8_t*>((address + 63) / 64 * 64);
  }
  const auto address = reinterpret_cast<uintptr_t>(holder.data_ptr());
  return reinterpret_cast<uint8_t*>((address + 63) / 64 * 64);
}

// The CPU kernels count rast pixels whose value is neither background nor an id of the
// index buffer's triangles (they treat them as background); this turns a count into an error.
void check_no_invalid_ids(int64_t invalid, int64_t F, const char* op) {
  TORCH_CHECK(invalid == 0, op, ": ", invalid,
              " pixels of rast hold a triangle id that tri does not have (tri has ", F,
              " triangles); pass the index buffer that was rasterized, or one with the same "
              "triangle count such as UV faces");
}

}  // namespace

Tensor rasterize_forward(const Tensor& pos, const Tensor& tri, int64_t height, int64_t width) {
  check_float_tensor(pos, "pos", 3);
  TORCH_CHECK(pos.size(2) == 4, "pos must have shape [B,V,4] (clip-space x, y, z, w), got ",
              shape_of(pos));
  check_triangles(tri, pos, pos.size(1), "pos");
  TORCH_CHECK(height > 0 && width > 0, "resolution must be positive, got (", height, ", ",
              width, ")");
  TORCH_CHECK(height * width < (int64_t(1) << 31), "resolution is too large (H * W must be below 2^31)");
  const int64_t F = tri.size(0);
  TORCH_CHECK(pos.scalar_type() != torch::kFloat32 || F < (int64_t(1) << 24),
              "float32 rast stores triangle ids exactly only below 2^24 triangles; use float64");
  const int B = int(pos.size(0)), V = int(pos.size(1)), H = int(height), W = int(width);
  Tensor rast = torch::empty({B, H, W, 4}, pos.options());
  if (rast.numel() == 0) return rast;
  AT_DISPATCH_FLOATING_TYPES(pos.scalar_type(), "rasterize_forward", [&] {
    const int64_t setup_bytes = int64_t(B) * F * int64_t(sizeof(TriangleSetup<scalar_t>));
    if (pos.is_cuda()) {
#ifdef FLAMEKIT_WITH_CUDA
      const c10::cuda::CUDAGuard guard(pos.device());
      Tensor setups = torch::empty({std::max<int64_t>(setup_bytes, 1)},
                                   pos.options().dtype(torch::kUInt8));
      auto* setup_ptr = reinterpret_cast<TriangleSetup<scalar_t>*>(setups.data_ptr());
      Tensor frags = torch::empty({B, H, W}, pos.options().dtype(torch::kInt64));
      auto* frag_ptr = reinterpret_cast<uint64_t*>(frags.data_ptr<int64_t>());
      check_cuda(cuda::rasterize_forward(pos.data_ptr<scalar_t>(), tri.data_ptr<int32_t>(), B,
                                         V, int(F), H, W, setup_ptr, frag_ptr,
                                         rast.data_ptr<scalar_t>(),
                                         c10::cuda::getCurrentCUDAStream()),
                 "rasterize");
#else
      no_cuda();
#endif
      return;
    }
    // CPU: the per-vertex ndc follow the setups in the same workspace.
    const int64_t ndc_offset = (setup_bytes + 63) / 64 * 64;
    const int64_t ndc_bytes = int64_t(B) * V * int64_t(sizeof(VertexNdc<scalar_t>));
    Tensor workspace_holder;
    uint8_t* workspace = cpu_workspace(ndc_offset + ndc_bytes, workspace_holder);
    auto* setup_ptr = reinterpret_cast<TriangleSetup<scalar_t>*>(workspace);
    auto* ndc_ptr = reinterpret_cast<VertexNdc<scalar_t>*>(workspace + ndc_offset);
    const scalar_t* p = pos.data_ptr<scalar_t>();
    const int32_t* t = tri.data_ptr<int32_t>();
    at::parallel_for(0, int64_t(B) * V, 2048, [&](int64_t b, int64_t e) {
      cpu::raster_vertex_ndc(p, ndc_ptr, b, e);
    });
    at::parallel_for(0, int64_t(B) * F, 1024, [&](int64_t b, int64_t e) {
      cpu::raster_setup(p, ndc_ptr, t, V, int(F), H, W, setup_ptr, b, e);
    });
    scalar_t* r = rast.data_ptr<scalar_t>();
    at::parallel_for(0, int64_t(B) * H, 8, [&](int64_t b, int64_t e) {
      cpu::raster_band(setup_ptr, int(F), H, W, r, b, e);
    });
  });
  return rast;
}

Tensor rasterize_backward(const Tensor& pos, const Tensor& tri, const Tensor& rast,
                          const Tensor& grad_rast) {
  check_float_tensor(pos, "pos", 3);
  check_triangles(tri, pos, pos.size(1), "pos");
  check_rast(rast, pos, "pos");
  check_rast(grad_rast, pos, "pos");
  TORCH_CHECK(grad_rast.sizes() == rast.sizes(), "grad_rast must match rast");
  TORCH_CHECK(rast.size(0) == pos.size(0), "rast and pos have different batch sizes");
  const int V = int(pos.size(1)), H = int(rast.size(1)), W = int(rast.size(2));
  const int F = int(tri.size(0));
  Tensor grad_pos = torch::zeros_like(pos);
  if (rast.numel() == 0) return grad_pos;
  AT_DISPATCH_FLOATING_TYPES(pos.scalar_type(), "rasterize_backward", [&] {
    if (pos.is_cuda()) {
#ifdef FLAMEKIT_WITH_CUDA
      const c10::cuda::CUDAGuard guard(pos.device());
      check_cuda(cuda::rasterize_backward(pos.data_ptr<scalar_t>(), tri.data_ptr<int32_t>(),
                                          F, rast.data_ptr<scalar_t>(),
                                          grad_rast.data_ptr<scalar_t>(), int(pos.size(0)), V,
                                          H, W, grad_pos.data_ptr<scalar_t>(),
                                          c10::cuda::getCurrentCUDAStream()),
                 "rasterize backward");
#else
      no_cuda();
#endif
      return;
    }
    std::atomic<int64_t> invalid{0};
    parallel_accumulate(rast.numel() / 4, grad_pos, [&](Tensor out, int64_t b, int64_t e) {
      invalid += cpu::raster_backward(pos.data_ptr<scalar_t>(), tri.data_ptr<int32_t>(), F,
                                      rast.data_ptr<scalar_t>(),
                                      grad_rast.data_ptr<scalar_t>(), V, H, W,
                                      out.data_ptr<scalar_t>(), b, e);
    });
    check_no_invalid_ids(invalid, F, "rasterize backward");
  });
  return grad_pos;
}

namespace {

// attr is [B,V,C] (batched) or [V,C] (shared); returns (batched, V, C).
std::tuple<bool, int64_t, int64_t> attr_layout(const Tensor& attr, const Tensor& rast) {
  TORCH_CHECK(attr.dim() == 2 || attr.dim() == 3, "attr must have shape [B,V,C] or [V,C], got ",
              shape_of(attr));
  check_float_tensor(attr, "attr", attr.dim());
  const bool batched = attr.dim() == 3;
  if (batched)
    TORCH_CHECK(attr.size(0) == rast.size(0), "attr has batch size ", attr.size(0),
                " but rast has ", rast.size(0), "; pass [V,C] to share attributes");
  return {batched, attr.size(batched ? 1 : 0), attr.size(batched ? 2 : 1)};
}

}  // namespace

Tensor interpolate_forward(const Tensor& attr, const Tensor& rast, const Tensor& tri) {
  check_rast(rast, rast, "rast");
  const auto [batched, V, C] = attr_layout(attr, rast);
  check_same(attr, rast, "attr", "rast");
  check_triangles(tri, attr, V, "attr");
  const int64_t B = rast.size(0), H = rast.size(1), W = rast.size(2), F = tri.size(0);
  Tensor out = torch::empty({B, H, W, C}, attr.options());
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(attr.scalar_type(), "interpolate_forward", [&] {
    if (attr.is_cuda()) {
#ifdef FLAMEKIT_WITH_CUDA
      const c10::cuda::CUDAGuard guard(attr.device());
      check_cuda(cuda::interpolate_forward(attr.data_ptr<scalar_t>(), batched,
                                           rast.data_ptr<scalar_t>(), tri.data_ptr<int32_t>(),
                                           int(F), int(B), int(V), int(C), int(H), int(W),
                                           out.data_ptr<scalar_t>(),
                                           c10::cuda::getCurrentCUDAStream()),
                 "interpolate");
#else
      no_cuda();
#endif
      return;
    }
    std::atomic<int64_t> invalid{0};
    at::parallel_for(0, B * H * W, kPixelGrain, [&](int64_t b, int64_t e) {
      invalid += cpu::interpolate_forward(
          attr.data_ptr<scalar_t>(), batched, rast.data_ptr<scalar_t>(),
          tri.data_ptr<int32_t>(), int(F), int(V), int(C), int(H * W),
          out.data_ptr<scalar_t>(), b, e);
    });
    check_no_invalid_ids(invalid, F, "interpolate");
  });
  return out;
}

std::vector<Tensor> interpolate_backward(const Tensor& attr, const Tensor& rast,
                                         const Tensor& tri, const Tensor& grad_out) {
  check_rast(rast, rast, "rast");
  const auto [batched, V, C] = attr_layout(attr, rast);
  check_same(attr, rast, "attr", "rast");
  check_triangles(tri, attr, V, "attr");
  check_float_tensor(grad_out, "grad_out", 4);
  check_same(grad_out, attr, "grad_out", "attr");
  const int64_t B = rast.size(0), H = rast.size(1), W = rast.size(2), F = tri.size(0);
  TORCH_CHECK(grad_out.sizes() == torch::IntArrayRef({B, H, W, C}), "grad_out has shape ",
              shape_of(grad_out), ", expected [B,H,W,C]");
  Tensor grad_attr = torch::zeros_like(attr);
  Tensor grad_rast = torch::empty_like(rast);
  if (rast.numel() == 0) return {grad_attr, grad_rast};
  AT_DISPATCH_FLOATING_TYPES(attr.scalar_type(), "interpolate_backward", [&] {
    if (attr.is_cuda()) {
#ifdef FLAMEKIT_WITH_CUDA
      const c10::cuda::CUDAGuard guard(attr.device());
      check_cuda(cuda::interpolate_backward(
                     attr.data_ptr<scalar_t>(), batched, rast.data_ptr<scalar_t>(),
                     tri.data_ptr<int32_t>(), int(F), grad_out.data_ptr<scalar_t>(), int(B),
                     int(V),
                     int(C), int(H), int(W), grad_attr.data_ptr<scalar_t>(),
                     grad_rast.data_ptr<scalar_t>(), c10::cuda::getCurrentCUDAStream()),
                 "interpolate backward");
#else
      no_cuda();
#endif
      return;
    }
    std::atomic<int64_t> invalid{0};
    parallel_accumulate(B * H * W, grad_attr, [&](Tensor out, int64_t b, int64_t e) {
      invalid += cpu::interpolate_backward(
          attr.data_ptr<scalar_t>(), batched, rast.data_ptr<scalar_t>(),
          tri.data_ptr<int32_t>(), int(F), grad_out.data_ptr<scalar_t>(), int(V), int(C),
          int(H * W), out.data_ptr<scalar_t>(), grad_rast.data_ptr<scalar_t>(), b, e);
    });
    check_no_invalid_ids(invalid, F, "interpolate backward");
  });
  return {grad_attr, grad_rast};
}

namespace {

void check_shading_inputs(const Tensor& albedo, const Tensor& normals, const Tensor& sh) {
  check_float_tensor(albedo, "albedo", 4);
  TORCH_CHECK(albedo.size(3) == 3, "albedo must have shape [B,H,W,3], got ", shape_of(albedo));
  check_image_size(albedo, "albedo");
  check_float_tensor(normals, "normals", 4);
  TORCH_CHECK(normals.sizes() == albedo.sizes(), "normals has shape ", shape_of(normals),
              " but albedo has ", shape_of(albedo));
  check_same(normals, albedo, "normals", "albedo");
  check_float_tensor(sh, "sh", 3);
  check_same(sh, albedo, "sh", "albedo");
  TORCH_CHECK(sh.size(0) == albedo.size(0) && sh.size(1) == 9 &&
                  (sh.size(2) == 3 || sh.size(2) == 1),
              "sh must have shape [B,9,3] (per colour) or [B,9,1] (shared), got ",
              shape_of(sh), " for batch size ", albedo.size(0));
}

}  // namespace

std::vector<Tensor> sh_shade_forward(const Tensor& albedo, const Tensor& normals,
                                     const Tensor& sh) {
  check_shading_inputs(albedo, normals, sh);
  Tensor image = torch::empty_like(albedo);
  Tensor shading = torch::empty_like(albedo);
  const int64_t B = albedo.size(0), HW = albedo.size(1) * albedo.size(2);
  const int sc = int(sh.size(2));
  if (albedo.numel() == 0) return {image, shading};
  AT_DISPATCH_FLOATING_TYPES(albedo.scalar_type(), "sh_shade_forward", [&] {
    if (albedo.is_cuda()) {
#ifdef FLAMEKIT_WITH_CUDA
      const c10::cuda::CUDAGuard guard(albedo.device());
      check_cuda(cuda::sh_shade_forward(albedo.data_ptr<scalar_t>(),
                                        normals.data_ptr<scalar_t>(), sh.data_ptr<scalar_t>(),
                                        sc, int(B), int(HW), image.data_ptr<scalar_t>(),
                                        shading.data_ptr<scalar_t>(),
                                        c10::cuda::getCurrentCUDAStream()),
                 "sh_shade");
#else
      no_cuda();
#endif
      return;
    }
    at::parallel_for(0, B * HW, kPixelGrain, [&](int64_t b, int64_t e) {
      cpu::sh_shade_forward(albedo.data_ptr<scalar_t>(), normals.data_ptr<scalar_t>(),
                            sh.data_ptr<scalar_t>(), sc, int(HW), image.data_ptr<scalar_t>(),
                            shading.data_ptr<scalar_t>(), b, e);
    });
  });
  return {image, shading};
}

std::vector<Tensor> sh_shade_backward(const Tensor& albedo, const Tensor& normals,
                                      const Tensor& sh, const Tensor& grad_image,
                                      const c10::optional<Tensor>& grad_shading) {
  check_shading_inputs(albedo, normals, sh);
  check_float_tensor(grad_image, "grad_image", 4);
  check_same(grad_image, albedo, "grad_image", "albedo");
  TORCH_CHECK(grad_image.sizes() == albedo.sizes(), "grad_image must match albedo");
  const bool has_gs = grad_shading.has_value() && grad_shading->defined();
  if (has_gs) {
    check_float_tensor(*grad_shading, "grad_shading", 4);
    check_same(*grad_shading, albedo, "grad_shading", "albedo");
    TORCH_CHECK(grad_shading->sizes() == albedo.sizes(), "grad_shading must match albedo");
  }
  Tensor grad_albedo = torch::empty_like(albedo);
  Tensor grad_normals = torch::empty_like(normals);
  Tensor grad_sh = torch::zeros_like(sh);
  const int64_t B = albedo.size(0), HW = albedo.size(1) * albedo.size(2);
  const int sc = int(sh.size(2));
  if (albedo.numel() == 0) return {grad_albedo, grad_normals, grad_sh};
  AT_DISPATCH_FLOATING_TYPES(albedo.scalar_type(), "sh_shade_backward", [&] {
    const scalar_t* gs_ptr = has_gs ? grad_shading->data_ptr<scalar_t>() : nullptr;
    if (albedo.is_cuda()) {
#ifdef FLAMEKIT_WITH_CUDA
      const c10::cuda::CUDAGuard guard(albedo.device());
      Tensor partial =
          torch::empty({std::max<int64_t>(1, cuda::sh_shade_partial_size(int(B), int(HW), sc))},
                       albedo.options());
      check_cuda(cuda::sh_shade_backward(
                     albedo.data_ptr<scalar_t>(), normals.data_ptr<scalar_t>(),
                     sh.data_ptr<scalar_t>(), sc, int(B), int(HW),
                     grad_image.data_ptr<scalar_t>(), gs_ptr, grad_albedo.data_ptr<scalar_t>(),
                     grad_normals.data_ptr<scalar_t>(), grad_sh.data_ptr<scalar_t>(),
                     partial.data_ptr<scalar_t>(), c10::cuda::getCurrentCUDAStream()),
                 "sh_shade backward");
#else
      no_cuda();
#endif
      return;
    }
    parallel_accumulate(B * HW, grad_sh, [&](Tensor out, int64_t b, int64_t e) {
      cpu::sh_shade_backward(albedo.data_ptr<scalar_t>(), normals.data_ptr<scalar_t>(),
                             sh.data_ptr<scalar_t>(), sc, int(HW),
                             grad_image.data_ptr<scalar_t>(), gs_ptr,
                             grad_albedo.data_ptr<scalar_t>(),
                             grad_normals.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), b, e);
    });
  });
  return {grad_albedo, grad_normals, grad_sh};
}

bool built_with_cuda() {
#ifdef FLAMEKIT_WITH_CUDA
  return true;
#else
  return false;
#endif
}

}  // namespace flamekit
