// Reading and writing values in torch.save's format without Python and without running any
// pickled code: LibTorch's unpickler only rebuilds tensors and plain containers.
#pragma once

#include <string>

#include <ATen/core/ivalue.h>

namespace tsnative {

// Reads a value (tensor, or tuple / list / dict of them) written by torch.save.
// Throws InputError naming the file and the cause.
c10::IValue load_value(const std::string& path);

// Writes a value so that Python's torch.load reads it back. Tensors and tuples load with
// torch.load's default (weights_only=True); typed lists and dicts need weights_only=False,
// because LibTorch's pickler tags their element types with globals the safe loader refuses.
// Throws Error on failure.
void save_value(const std::string& path, const c10::IValue& value);

}  // namespace tsnative
