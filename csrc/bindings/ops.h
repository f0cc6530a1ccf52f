// Declarations of the torch-facing ops (bindings/ops.cpp, bindings/autograd.cpp), registered
// in module.cpp.
#pragma once

#include <torch/extension.h>

#include <vector>

namespace flamekit {

torch::Tensor rasterize_forward(const torch::Tensor& pos, const torch::Tensor& tri,
                                int64_t height, int64_t width);
torch::Tensor rasterize_backward(const torch::Tensor& pos, const torch::Tensor& tri,
                                 const torch::Tensor& rast, const torch::Tensor& grad_rast);
torch::Tensor interpolate_forward(const torch::Tensor& attr, const torch::Tensor& rast,
                                  const torch::Tensor& tri);
std::vector<torch::Tensor> interpolate_backward(const torch::Tensor& attr,
                                                const torch::Tensor& rast,
                                                const torch::Tensor& tri,
                                                const torch::Tensor& grad_out);
std::vector<torch::Tensor> sh_shade_forward(const torch::Tensor& albedo,
                                            const torch::Tensor& normals,
                                            const torch::Tensor& sh);
std::vector<torch::Tensor> sh_shade_backward(const torch::Tensor& albedo,
                                             const torch::Tensor& normals,
                                             const torch::Tensor& sh,
                                             const torch::Tensor& grad_image,
                                             const c10::optional<torch::Tensor>& grad_shading);
bool built_with_cuda();

// Differentiable versions (bindings/autograd.cpp): C++ autograd Functions over the ops above.
torch::Tensor rasterize(const torch::Tensor& pos, const torch::Tensor& tri, int64_t height,
                        int64_t width);
torch::Tensor interpolate(const torch::Tensor& attr, const torch::Tensor& rast,
                          const torch::Tensor& tri);
std::vector<torch::Tensor> sh_shade(const torch::Tensor& albedo, const torch::Tensor& normals,
                                    const torch::Tensor& sh);

}  // namespace flamekit
