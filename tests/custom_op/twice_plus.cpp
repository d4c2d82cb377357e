// A TorchScript operator in a shared library of its own, as in PyTorch's custom-operator
// tutorial: accop::twice_plus(x, y) = 2 * x + y. The tests compile it and load it with
// tsnative.load_library / ts-infer --load-library.
#include <torch/library.h>

#include <ATen/ATen.h>

namespace {

at::Tensor twice_plus(const at::Tensor& x, const at::Tensor& y) { return x * 2 + y; }

}  // namespace

TORCH_LIBRARY(accop, m) { m.def("twice_plus(Tensor x, Tensor y) -> Tensor", twice_plus); }
