// Python module flamekit._C: the raw forward/backward ops, and the differentiable ops (C++
// autograd Functions) that flamekit/render/ops.py wraps for users.
#include <torch/extension.h>

#include "ops.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "flamekit rasterizer and shading kernels (CPU, and CUDA when built with it)";
  m.def("rasterize_forward", &flamekit::rasterize_forward, "rast [B,H,W,4] from pos and tri",
        py::arg("pos"), py::arg("tri"), py::arg("height"), py::arg("width"));
  m.def("rasterize_backward", &flamekit::rasterize_backward, "dL/dpos",
        py::arg("pos"), py::arg("tri"), py::arg("rast"), py::arg("grad_rast"));
  m.def("interpolate_forward", &flamekit::interpolate_forward, "attributes at pixels",
        py::arg("attr"), py::arg("rast"), py::arg("tri"));
  m.def("interpolate_backward", &flamekit::interpolate_backward, "(dL/dattr, dL/drast)",
        py::arg("attr"), py::arg("rast"), py::arg("tri"), py::arg("grad_out"));
  m.def("sh_shade_forward", &flamekit::sh_shade_forward, "(image, shading)",
        py::arg("albedo"), py::arg("normals"), py::arg("sh"));
  m.def("sh_shade_backward", &flamekit::sh_shade_backward,
        "(dL/dalbedo, dL/dnormals, dL/dsh)", py::arg("albedo"), py::arg("normals"),
        py::arg("sh"), py::arg("grad_image"), py::arg("grad_shading") = py::none());
  m.def("rasterize", &flamekit::rasterize, "differentiable rasterize_forward", py::arg("pos"),
        py::arg("tri"), py::arg("height"), py::arg("width"));
  m.def("interpolate", &flamekit::interpolate, "differentiable interpolate_forward",
        py::arg("attr"), py::arg("rast"), py::arg("tri"));
  m.def("sh_shade", &flamekit::sh_shade, "differentiable sh_shade_forward: (image, shading)",
        py::arg("albedo"), py::arg("normals"), py::arg("sh"));
  m.def("built_with_cuda", &flamekit::built_with_cuda, "whether CUDA kernels were compiled");
}
