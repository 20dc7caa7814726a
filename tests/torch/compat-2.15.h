// Forced into tch 0.26's C++ wrappers (CXXFLAGS=-include) when they are built against
// PyTorch 2.15 instead of the 2.13 they were generated for: 2.15 removed the deprecated
// torch::cholesky and torch::qr, which the wrappers still call. Same semantics via linalg_*.
#pragma once
#include <torch/all.h>

namespace torch {
inline at::Tensor cholesky(const at::Tensor& self, bool upper) {
  return at::linalg_cholesky(self, upper);
}
inline at::Tensor& cholesky_out(at::Tensor& out, const at::Tensor& self, bool upper) {
  return at::linalg_cholesky_out(out, self, upper);
}
inline std::tuple<at::Tensor, at::Tensor> qr(const at::Tensor& self, bool some) {
  return at::linalg_qr(self, some ? "reduced" : "complete");
}
inline std::tuple<at::Tensor&, at::Tensor&> qr_out(at::Tensor& q, at::Tensor& r,
                                                   const at::Tensor& self, bool some) {
  return at::linalg_qr_out(q, r, self, some ? "reduced" : "complete");
}
}  // namespace torch
