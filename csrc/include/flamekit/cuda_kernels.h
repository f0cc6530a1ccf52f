// flamekit/cuda_kernels.h — torch-free CUDA launchers.
//
// The .cu files that implement these include only this header, raster_math.h and the CUDA
// runtime, so nvcc never sees torch headers. Every launcher enqueues its kernels on the
// given stream and returns the launch status (cudaGetLastError after the last launch).
// Layouts match cpu_kernels.h. Instantiated for float and double.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "flamekit/raster_math.h"

namespace flamekit {
namespace cuda {

// rast [B,H,W,4] = (b0, b1, z, tri + 1). Workspaces: setups [B*F], frags [B*H*W]
// (the launcher initializes both).
template <typename T>
cudaError_t rasterize_forward(const T* pos, const int32_t* tri, int B, int V, int F, int H,
                              int W, TriangleSetup<T>* setups, uint64_t* frags, T* rast,
                              cudaStream_t stream);

// grad_pos [B,V,4] must be zeroed by the caller; accumulated with atomics. tri has F
// triangles; here and in the interpolation, a rast value that is neither background nor one
// of their ids is treated as background (the CPU binding reports it as an error; on the
// device that would need a synchronization).
template <typename T>
cudaError_t rasterize_backward(const T* pos, const int32_t* tri, int F, const T* rast,
                               const T* grad_rast, int B, int V, int H, int W, T* grad_pos,
                               cudaStream_t stream);

template <typename T>
cudaError_t interpolate_forward(const T* attr, bool attr_batched, const T* rast,
                                const int32_t* tri, int F, int B, int V, int C, int H, int W,
                                T* out, cudaStream_t stream);

// grad_attr (zeroed by the caller, shaped like attr) is accumulated with atomics;
// grad_rast [B,H,W,4] is fully written.
template <typename T>
cudaError_t interpolate_backward(const T* attr, bool attr_batched, const T* rast,
                                 const int32_t* tri, int F, const T* grad_out, int B, int V,
                                 int C, int H, int W, T* grad_attr, T* grad_rast,
                                 cudaStream_t stream);

template <typename T>
cudaError_t sh_shade_forward(const T* albedo, const T* normals, const T* sh, int sh_channels,
                             int B, int HW, T* image, T* shading, cudaStream_t stream);

// grad_shading may be null. partial is a workspace of sh_shade_partial_size(B, HW,
// sh_channels) elements; grad_sh [B,9,sh_channels] is fully written (deterministic
// two-pass reduction).
int64_t sh_shade_partial_size(int B, int HW, int sh_channels);

template <typename T>
cudaError_t sh_shade_backward(const T* albedo, const T* normals, const T* sh, int sh_channels,
                              int B, int HW, const T* grad_image, const T* grad_shading,
                              T* grad_albedo, T* grad_normals, T* grad_sh, T* partial,
                              cudaStream_t stream);

}  // namespace cuda
}  // namespace flamekit
