#include "core/model_format.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include <caffe2/serialize/inline_container.h>

namespace tsnative {
namespace {

// A protobuf field key: (field number << 3) | wire type.
constexpr uint8_t key(int field, int wire_type) {
  return static_cast<uint8_t>((field << 3) | wire_type);
}

// ONNX's ModelProto, as every exporter writes it, starts with ir_version (field 1, a varint:
// 3 to about 12 today) and then another of its fields: producer_name, producer_version,
// domain, model_version, doc_string, graph, opset_import or metadata_props.
bool looks_like_onnx(const uint8_t* bytes, size_t size) {
  if (size < 3 || bytes[0] != key(1, 0) || bytes[1] == 0 || bytes[1] > 0x7f) return false;
  const uint8_t next = bytes[2];
  for (const uint8_t field :
       {key(2, 2), key(3, 2), key(4, 2), key(5, 0), key(6, 2), key(7, 2), key(8, 2), key(14, 2)}) {
    if (next == field) return true;
  }
  return false;
}

}  // namespace

ModelFormat sniff_model_format(const char* data, size_t size) {
  if (size >= 4 && std::memcmp(data, "PK\x03\x04", 4) == 0) return ModelFormat::kTorchScript;
  if (looks_like_onnx(reinterpret_cast<const uint8_t*>(data), size)) return ModelFormat::kOnnx;
  return ModelFormat::kUnknown;
}

ModelFormat archive_model_format(
    const std::shared_ptr<caffe2::serialize::ReadAdapterInterface>& archive) {
  char first[8] = {};
  const auto read = archive->read(0, first, std::min<uint64_t>(sizeof first, archive->size()));
  const auto format = sniff_model_format(first, read);
  if (format != ModelFormat::kTorchScript) return format;
  std::vector<std::string> records;
  try {
    records = caffe2::serialize::PyTorchStreamReader(archive).getAllRecords();
  } catch (const std::exception&) {
    return format;  // not a zip PyTorch reads: the TorchScript loader says why
  }
  // A TorchScript archive's tensors are data/<n>; a package's compiled model sits under
  // data/aotinductor/<model name>/.
  const bool package = std::any_of(records.begin(), records.end(), [](const std::string& name) {
    return name.rfind("data/aotinductor/", 0) == 0;
  });
  return package ? ModelFormat::kAotInductor : format;
}

std::string model_format_name(ModelFormat format) {
  switch (format) {
    case ModelFormat::kTorchScript:
      return "TorchScript";
    case ModelFormat::kAotInductor:
      return "AOTInductor";
    case ModelFormat::kOnnx:
      return "ONNX";
    case ModelFormat::kUnknown:
      break;
  }
  return "unknown";
}

}  // namespace tsnative
