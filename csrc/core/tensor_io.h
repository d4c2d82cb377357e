// Reading and writing values in torch.save's format without Python and without running any
// pickled code: LibTorch's unpickler only rebuilds tensors and plain containers.
#pragma once

#include <string>

#include <ATen/core/ivalue.h>

namespace tsnative {

// Reads a value (tensor, or tuple / list / dict of them) written by torch.save.
// Throws InputError naming the file and the cause.
c10::IValue load_value(const std::string& path);

// Writes a value so that Python's torch.load reads it back with its default weights_only=True:
// tensors, numbers, strings, None, and tuples, lists and dicts of them. Written whole or not
// at all (an existing file is replaced only by a complete one). Throws Error naming the file
// and the system's reason on failure.
void save_value(const std::string& path, const c10::IValue& value);

}  // namespace tsnative
