// Which format a model file is, from its first bytes: what load() can run, and what it
// must send elsewhere with a clear word instead of a zip reader's complaint.
#pragma once

#include <cstddef>
#include <string>

namespace tsnative {

enum class ModelFormat {
  kTorchScript,  // a zip archive ("PK\x03\x04"), as torch.jit.save writes
  kOnnx,         // an ONNX ModelProto (protobuf): run by ONNX Runtime, from the Python API
  kUnknown,
};

// At least the first 8 bytes of the file (fewer if it is shorter).
ModelFormat sniff_model_format(const char* data, size_t size);

// "TorchScript", "ONNX", "unknown".
std::string model_format_name(ModelFormat format);

}  // namespace tsnative
