// Which format a model file is, from its first bytes (and a zip archive's record names): what
// load() runs with which backend, and what it must send elsewhere with a clear word instead of
// a zip reader's complaint.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include <caffe2/serialize/read_adapter_interface.h>

namespace tsnative {

enum class ModelFormat {
  kTorchScript,  // a zip archive ("PK\x03\x04"), as torch.jit.save writes
  kAotInductor,  // a zip archive holding data/aotinductor/ (aoti_compile_and_package's .pt2)
  kOnnx,         // an ONNX ModelProto (protobuf): run by ONNX Runtime, from the Python API
  kUnknown,
};

// From at least the first 8 bytes of the file (fewer if it is shorter). Every zip archive is
// kTorchScript here: telling a .pt2 from a .pt takes its records (below).
ModelFormat sniff_model_format(const char* data, size_t size);

// The format of the file `archive` reads: sniff_model_format, and for a zip archive that
// PyTorch's reader can list, kAotInductor if it holds an AOTInductor package.
ModelFormat archive_model_format(
    const std::shared_ptr<caffe2::serialize::ReadAdapterInterface>& archive);

// "TorchScript", "AOTInductor", "ONNX", "unknown".
std::string model_format_name(ModelFormat format);

}  // namespace tsnative
