// The differentiable ops as C++ autograd Functions: the same forward/backward ops as the raw
// bindings, with the graph bookkeeping done in C++ rather than by Python
// torch.autograd.Function classes (about 15 microseconds less per op and step, which is a
// tenth of a 224x224 render step on the CPU).
#include <torch/extension.h>

#include "ops.h"

namespace flamekit {
namespace {

using torch::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct RasterizeFunction : public torch::autograd::Function<RasterizeFunction> {
  static Tensor forward(AutogradContext* ctx, const Tensor& pos, const Tensor& tri,
                        int64_t height, int64_t width) {
    Tensor rast = rasterize_forward(pos, tri, height, width);
    ctx->save_for_backward({pos, tri, rast});
    return rast;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    return {rasterize_backward(saved[0], saved[1], saved[2], grads[0].contiguous()), Tensor(),
            Tensor(), Tensor()};
  }
};

struct InterpolateFunction : public torch::autograd::Function<InterpolateFunction> {
  static Tensor forward(AutogradContext* ctx, const Tensor& attr, const Tensor& rast,
                        const Tensor& tri) {
    ctx->save_for_backward({attr, rast, tri});
    return interpolate_forward(attr, rast, tri);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    auto result = interpolate_backward(saved[0], saved[1], saved[2], grads[0].contiguous());
    return {result[0], result[1], Tensor()};
  }
};

struct ShShadeFunction : public torch::autograd::Function<ShShadeFunction> {
  static variable_list forward(AutogradContext* ctx, const Tensor& albedo,
                               const Tensor& normals, const Tensor& sh) {
    ctx->save_for_backward({albedo, normals, sh});
    ctx->set_materialize_grads(false);  // an unused shading output needs no zero gradient
    return sh_shade_forward(albedo, normals, sh);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const Tensor grad_image =
        grads[0].defined() ? grads[0].contiguous() : torch::zeros_like(saved[0]);
    c10::optional<Tensor> grad_shading;
    if (grads[1].defined()) grad_shading = grads[1].contiguous();
    return sh_shade_backward(saved[0], saved[1], saved[2], grad_image, grad_shading);
  }
};

}  // namespace

Tensor rasterize(const Tensor& pos, const Tensor& tri, int64_t height, int64_t width) {
  return RasterizeFunction::apply(pos, tri, height, width);
}

Tensor interpolate(const Tensor& attr, const Tensor& rast, const Tensor& tri) {
  return InterpolateFunction::apply(attr, rast, tri);
}

std::vector<Tensor> sh_shade(const Tensor& albedo, const Tensor& normals, const Tensor& sh) {
  return ShShadeFunction::apply(albedo, normals, sh);
}

}  // namespace flamekit
