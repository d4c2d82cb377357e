#include "server/protocol.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>

#include <ATen/ATen.h>
#include <ATen/Dispatch_v2.h>
#include <nlohmann/json.hpp>

#include "core/errors.h"

namespace tsnative::server {

namespace {

using nlohmann::json;

struct DataTypeInfo {
  DataType datatype;
  const char* name;
  std::optional<c10::ScalarType> dtype;
};

const std::array<DataTypeInfo, 14> kDataTypes{{
    {DataType::kBool, "BOOL", c10::ScalarType::Bool},
    {DataType::kUint8, "UINT8", c10::ScalarType::Byte},
    {DataType::kUint16, "UINT16", c10::ScalarType::UInt16},
    {DataType::kUint32, "UINT32", c10::ScalarType::UInt32},
    {DataType::kUint64, "UINT64", c10::ScalarType::UInt64},
    {DataType::kInt8, "INT8", c10::ScalarType::Char},
    {DataType::kInt16, "INT16", c10::ScalarType::Short},
    {DataType::kInt32, "INT32", c10::ScalarType::Int},
    {DataType::kInt64, "INT64", c10::ScalarType::Long},
    {DataType::kFp16, "FP16", c10::ScalarType::Half},
    {DataType::kFp32, "FP32", c10::ScalarType::Float},
    {DataType::kFp64, "FP64", c10::ScalarType::Double},
    {DataType::kBf16, "BF16", c10::ScalarType::BFloat16},
    {DataType::kBytes, "BYTES", std::nullopt},
}};

const DataTypeInfo& info(DataType datatype) { return kDataTypes[static_cast<size_t>(datatype)]; }

// "input 'x'": how messages name a tensor of the request.
std::string field(const std::string& what, const std::string& name) {
  return what + " " + tsnative::quoted(name);
}

// A member of an object that must have a given JSON type, or nullptr where it is absent.
const json* member(const json& object, const char* key, json::value_t type, const char* type_name,
                   const std::string& where) {
  const auto it = object.find(key);
  if (it == object.end() || it->is_null()) return nullptr;
  const bool matches =
      type == json::value_t::number_integer ? it->is_number_integer() : it->type() == type;
  if (!matches) {
    throw ProtocolError(where + ": '" + key + "' must be " + type_name + ", got " +
                        it->type_name());
  }
  return &*it;
}

std::vector<int64_t> parse_shape(const json& tensor, const std::string& where,
                                 const RequestLimits& limits, int64_t& elements) {
  const auto* shape = member(tensor, "shape", json::value_t::array, "an array", where);
  if (!shape) throw ProtocolError(where + ": 'shape' is missing");
  if (static_cast<int64_t>(shape->size()) > limits.max_dimensions) {
    throw ProtocolError(where + ": 'shape' has " + std::to_string(shape->size()) +
                        " dimensions, more than " + std::to_string(limits.max_dimensions));
  }
  std::vector<int64_t> sizes;
  elements = 1;
  for (const auto& size : *shape) {
    if (!size.is_number_integer() || size.get<int64_t>() < 0) {
      throw ProtocolError(where + ": 'shape' must hold sizes >= 0, got " + size.dump());
    }
    const auto value = size.get<int64_t>();
    if (value != 0 && elements > limits.max_elements / value) {
      throw ProtocolError(where + ": shape " + shape->dump() + " has more than " +
                          std::to_string(limits.max_elements) + " elements");
    }
    elements *= value;
    sizes.push_back(value);
  }
  return sizes;
}

// The elements of "data", flat or nested row-major, in order. Nesting deeper than the shape
// is malformed (and bounded, so a hostile body cannot recurse far).
void flatten(const json& data, size_t depth, size_t max_depth, std::vector<const json*>& out,
             const std::string& where) {
  if (!data.is_array()) {
    out.push_back(&data);
    return;
  }
  if (depth >= max_depth) throw ProtocolError(where + ": 'data' is nested deeper than its shape");
  for (const auto& element : data) flatten(element, depth + 1, max_depth, out, where);
}

template <typename T>
T integer_element(const json& value, const std::string& where, const char* datatype) {
  const auto fail = [&] {
    return ProtocolError(where + ": " + value.dump() + " is not a " + datatype + " value");
  };
  if (!value.is_number_integer()) throw fail();
  if (value.is_number_unsigned()) {
    const auto number = value.get<uint64_t>();
    if (number > static_cast<uint64_t>(std::numeric_limits<T>::max())) throw fail();
    return static_cast<T>(number);
  }
  const auto number = value.get<int64_t>();
  if constexpr (std::is_unsigned_v<T>) {
    if (number < 0 || static_cast<uint64_t>(number) > std::numeric_limits<T>::max()) throw fail();
  } else {
    if (number < std::numeric_limits<T>::min() || number > std::numeric_limits<T>::max()) {
      throw fail();
    }
  }
  return static_cast<T>(number);
}

template <typename T>
void fill(const std::vector<const json*>& elements, at::Tensor& tensor, const std::string& where,
          const char* datatype) {
  auto* out = tensor.data_ptr<T>();
  for (size_t i = 0; i < elements.size(); ++i) {
    const auto& value = *elements[i];
    if constexpr (std::is_same_v<T, bool>) {
      if (!value.is_boolean()) {
        throw ProtocolError(where + ": " + value.dump() + " is not a BOOL value");
      }
      out[i] = value.get<bool>();
    } else if constexpr (std::is_floating_point_v<T>) {
      if (!value.is_number()) {
        throw ProtocolError(where + ": " + value.dump() + " is not a " + datatype + " value");
      }
      const auto number = value.get<double>();
      // A double beyond float's range has no float value (the conversion is undefined).
      if (std::is_same_v<T, float> && std::abs(number) > std::numeric_limits<float>::max()) {
        throw ProtocolError(where + ": " + value.dump() + " is out of " + datatype + "'s range");
      }
      out[i] = static_cast<T>(number);
    } else {
      out[i] = integer_element<T>(value, where, datatype);
    }
  }
}

// The tensor of a numeric input given as JSON.
at::Tensor tensor_from_json(const std::vector<const json*>& elements, DataType datatype,
                            const std::vector<int64_t>& shape, const std::string& where) {
  const char* name = datatype_name(datatype);
  // Half and bfloat16 values arrive as JSON numbers: parsed as float32, then rounded.
  const bool rounded = datatype == DataType::kFp16 || datatype == DataType::kBf16;
  auto tensor = at::empty(shape, rounded ? c10::ScalarType::Float : *scalar_type(datatype));
  switch (datatype) {
    case DataType::kBool:
      fill<bool>(elements, tensor, where, name);
      break;
    case DataType::kUint8:
      fill<uint8_t>(elements, tensor, where, name);
      break;
    case DataType::kUint16:
      fill<uint16_t>(elements, tensor, where, name);
      break;
    case DataType::kUint32:
      fill<uint32_t>(elements, tensor, where, name);
      break;
    case DataType::kUint64:
      fill<uint64_t>(elements, tensor, where, name);
      break;
    case DataType::kInt8:
      fill<int8_t>(elements, tensor, where, name);
      break;
    case DataType::kInt16:
      fill<int16_t>(elements, tensor, where, name);
      break;
    case DataType::kInt32:
      fill<int32_t>(elements, tensor, where, name);
      break;
    case DataType::kInt64:
      fill<int64_t>(elements, tensor, where, name);
      break;
    case DataType::kFp16:
    case DataType::kBf16:
    case DataType::kFp32:
      fill<float>(elements, tensor, where, name);
      break;
    case DataType::kFp64:
      fill<double>(elements, tensor, where, name);
      break;
    case DataType::kBytes:
      break;
  }
  return rounded ? tensor.to(*scalar_type(datatype)) : tensor;
}

uint32_t read_length(std::string_view bytes) {
  uint32_t length = 0;
  for (int i = 3; i >= 0; --i) length = (length << 8) | static_cast<uint8_t>(bytes[i]);
  return length;
}

// BYTES elements as the binary extension sends them: each a 4-byte little-endian length, then
// that many bytes.
std::vector<std::string> split_bytes(std::string_view data, int64_t elements,
                                     const std::string& where) {
  std::vector<std::string> out;
  while (!data.empty()) {
    if (data.size() < 4) throw ProtocolError(where + ": binary BYTES data ends inside a length");
    const auto length = read_length(data);
    data.remove_prefix(4);
    if (length > data.size()) {
      throw ProtocolError(where + ": binary BYTES element of " + std::to_string(length) +
                          " bytes runs past the data's end");
    }
    if (static_cast<int64_t>(out.size()) == elements) {
      throw ProtocolError(where + ": binary data holds more BYTES elements than its shape's " +
                          std::to_string(elements));
    }
    out.emplace_back(data.substr(0, length));
    data.remove_prefix(length);
  }
  if (static_cast<int64_t>(out.size()) != elements) {
    throw ProtocolError(where + ": binary data holds " + std::to_string(out.size()) +
                        " BYTES elements, its shape " + std::to_string(elements));
  }
  return out;
}

ProtocolTensor parse_input(const json& input, std::string_view& binary,
                           const RequestLimits& limits) {
  if (!input.is_object()) throw ProtocolError("each of 'inputs' must be an object");
  const auto* name = member(input, "name", json::value_t::string, "a string", "an input");
  if (!name) throw ProtocolError("an input has no 'name'");
  ProtocolTensor tensor;
  tensor.name = name->get<std::string>();
  const auto where = field("input", tensor.name);
  const auto* datatype = member(input, "datatype", json::value_t::string, "a string", where);
  if (!datatype) throw ProtocolError(where + ": 'datatype' is missing");
  const auto parsed = parse_datatype(datatype->get<std::string>());
  if (!parsed) {
    throw ProtocolError(where + ": unknown datatype " +
                        tsnative::quoted(datatype->get<std::string>()));
  }
  tensor.datatype = *parsed;
  int64_t elements = 0;
  tensor.shape = parse_shape(input, where, limits, elements);

  const auto* parameters = member(input, "parameters", json::value_t::object, "an object", where);
  const json* binary_size = parameters
                                ? member(*parameters, "binary_data_size",
                                         json::value_t::number_integer, "a whole number", where)
                                : nullptr;
  const auto* data = input.contains("data") ? &input.at("data") : nullptr;
  if (binary_size && data) {
    throw ProtocolError(where + ": has both 'data' and binary_data_size");
  }
  if (binary_size) {
    const auto size = binary_size->get<int64_t>();
    if (size < 0 || static_cast<uint64_t>(size) > binary.size()) {
      throw ProtocolError(where + ": binary_data_size " + std::to_string(size) + " but " +
                          std::to_string(binary.size()) + " bytes of binary data are left");
    }
    const auto bytes = binary.substr(0, static_cast<size_t>(size));
    binary.remove_prefix(static_cast<size_t>(size));
    if (tensor.datatype == DataType::kBytes) {
      tensor.bytes = split_bytes(bytes, elements, where);
      return tensor;
    }
    const auto dtype = *scalar_type(tensor.datatype);
    const auto expected = elements * static_cast<int64_t>(c10::elementSize(dtype));
    if (size != expected) {
      throw ProtocolError(where + ": binary_data_size is " + std::to_string(size) +
                          " bytes, its shape and datatype take " + std::to_string(expected));
    }
    if (tensor.datatype == DataType::kBool) {
      // A bool holds 0 or 1: any other byte would be a value C++ has no meaning for.
      for (const char byte : bytes) {
        if (byte != 0 && byte != 1) {
          throw ProtocolError(where + ": binary BOOL data holds a byte that is neither 0 nor 1");
        }
      }
    }
    tensor.tensor = at::empty(tensor.shape, dtype);
    if (size > 0) std::memcpy(tensor.tensor.data_ptr(), bytes.data(), bytes.size());
    return tensor;
  }
  if (!data) throw ProtocolError(where + ": 'data' is missing");
  std::vector<const json*> values;
  flatten(*data, 0, tensor.shape.size() + 1, values, where);
  if (static_cast<int64_t>(values.size()) != elements) {
    throw ProtocolError(where + ": 'data' has " + std::to_string(values.size()) +
                        " elements, its shape " + std::to_string(elements));
  }
  if (tensor.datatype == DataType::kBytes) {
    for (const auto* value : values) {
      if (!value->is_string()) {
        throw ProtocolError(where + ": " + value->dump() + " is not a BYTES value (a string)");
      }
      tensor.bytes.push_back(value->get<std::string>());
    }
    return tensor;
  }
  tensor.tensor = tensor_from_json(values, tensor.datatype, tensor.shape, where);
  return tensor;
}

RequestedOutput parse_output(const json& output) {
  if (!output.is_object()) throw ProtocolError("each of 'outputs' must be an object");
  const auto* name = member(output, "name", json::value_t::string, "a string", "an output");
  if (!name) throw ProtocolError("an output has no 'name'");
  RequestedOutput requested;
  requested.name = name->get<std::string>();
  const auto where = field("output", requested.name);
  const auto* parameters = member(output, "parameters", json::value_t::object, "an object", where);
  if (!parameters) return requested;
  if (const auto* binary =
          member(*parameters, "binary_data", json::value_t::boolean, "true or false", where)) {
    requested.binary_data = binary->get<bool>();
  }
  if (const auto* classification = member(*parameters, "classification",
                                          json::value_t::number_integer, "a whole number", where)) {
    requested.classification = classification->get<int64_t>();
    if (requested.classification < 1) {
      throw ProtocolError(where + ": 'classification' must be at least 1");
    }
  }
  return requested;
}

// A JSON array of a tensor's values, as numbers (half and bfloat16 widened) or booleans.
json values_json(const at::Tensor& tensor) {
  const auto flat = tensor.contiguous().reshape({-1});
  const auto dtype = flat.scalar_type();
  const auto count = static_cast<size_t>(flat.numel());
  if (dtype == c10::ScalarType::Half || dtype == c10::ScalarType::BFloat16) {
    return values_json(flat.to(c10::ScalarType::Float));
  }
  json out = json::array();
  AT_DISPATCH_V2(dtype, "values_json", AT_WRAP([&] {
                   const auto* values = flat.const_data_ptr<scalar_t>();
                   for (size_t i = 0; i < count; ++i) out.push_back(values[i]);
                 }),
                 AT_EXPAND(AT_ALL_TYPES), c10::kBool, AT_EXPAND(AT_BAREBONES_UNSIGNED_TYPES));
  return out;
}

void append_binary(const ProtocolTensor& tensor, std::string& out) {
  if (tensor.datatype == DataType::kBytes) {
    for (const auto& element : tensor.bytes) {
      const auto length = static_cast<uint32_t>(element.size());
      for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((length >> (8 * i)) & 0xff));
      out += element;
    }
    return;
  }
  const auto contiguous = tensor.tensor.contiguous();
  out.append(static_cast<const char*>(contiguous.const_data_ptr()), contiguous.nbytes());
}

}  // namespace

std::optional<DataType> parse_datatype(const std::string& name) {
  for (const auto& entry : kDataTypes) {
    if (name == entry.name) return entry.datatype;
  }
  return std::nullopt;
}

const char* datatype_name(DataType datatype) { return info(datatype).name; }

std::optional<c10::ScalarType> scalar_type(DataType datatype) { return info(datatype).dtype; }

std::optional<DataType> datatype_of(c10::ScalarType dtype) {
  for (const auto& entry : kDataTypes) {
    if (entry.dtype == dtype) return entry.datatype;
  }
  return std::nullopt;
}

InferRequest parse_infer_request(std::string_view body, std::optional<size_t> json_length,
                                 const RequestLimits& limits) {
  if (json_length && *json_length > body.size()) {
    throw ProtocolError("Inference-Header-Content-Length is " + std::to_string(*json_length) +
                        " but the body has " + std::to_string(body.size()) + " bytes");
  }
  const auto header = body.substr(0, json_length.value_or(body.size()));
  auto binary = body.substr(header.size());
  json request;
  try {
    request = json::parse(header);
  } catch (const json::exception& e) {
    throw ProtocolError("the request is not valid JSON: " + first_line(e.what()));
  }
  if (!request.is_object()) throw ProtocolError("the request must be a JSON object");
  InferRequest parsed;
  if (const auto* id = member(request, "id", json::value_t::string, "a string", "the request")) {
    parsed.id = id->get<std::string>();
  }
  if (const auto* parameters =
          member(request, "parameters", json::value_t::object, "an object", "the request")) {
    if (const auto* binary_output =
            member(*parameters, "binary_data_output", json::value_t::boolean, "true or false",
                   "the request")) {
      parsed.binary_data_output = binary_output->get<bool>();
    }
  }
  const auto* inputs = member(request, "inputs", json::value_t::array, "an array", "the request");
  if (!inputs || inputs->empty()) throw ProtocolError("the request has no 'inputs'");
  for (const auto& input : *inputs) {
    parsed.inputs.push_back(parse_input(input, binary, limits));
    for (size_t i = 0; i + 1 < parsed.inputs.size(); ++i) {
      if (parsed.inputs[i].name == parsed.inputs.back().name) {
        throw ProtocolError(field("input", parsed.inputs.back().name) + " is given twice");
      }
    }
  }
  if (!binary.empty()) {
    throw ProtocolError(std::to_string(binary.size()) +
                        " bytes of binary data follow the JSON that no input's "
                        "binary_data_size claims");
  }
  if (const auto* outputs =
          member(request, "outputs", json::value_t::array, "an array", "the request")) {
    for (const auto& output : *outputs) parsed.outputs.push_back(parse_output(output));
  }
  return parsed;
}

EncodedResponse encode_infer_response(const std::string& model_name, const std::string& version,
                                      const std::string& id,
                                      const std::vector<ProtocolTensor>& outputs,
                                      const std::vector<bool>& binary) {
  json response = {{"model_name", model_name}, {"model_version", version}};
  if (!id.empty()) response["id"] = id;
  response["outputs"] = json::array();
  std::string binary_data;
  for (size_t i = 0; i < outputs.size(); ++i) {
    const auto& tensor = outputs[i];
    json entry = {{"name", tensor.name},
                  {"datatype", datatype_name(tensor.datatype)},
                  {"shape", tensor.shape}};
    if (binary[i]) {
      const auto before = binary_data.size();
      append_binary(tensor, binary_data);
      entry["parameters"] = {{"binary_data_size", binary_data.size() - before}};
    } else if (tensor.datatype == DataType::kBytes) {
      // JSON strings must be UTF-8: bytes that are not are shown escaped, as messages are.
      json strings = json::array();
      for (const auto& element : tensor.bytes) strings.push_back(printable(element));
      entry["data"] = std::move(strings);
    } else {
      entry["data"] = values_json(tensor.tensor);
    }
    response["outputs"].push_back(std::move(entry));
  }
  EncodedResponse encoded;
  encoded.body = response.dump(-1, ' ', false, json::error_handler_t::replace);
  if (!binary_data.empty() || std::find(binary.begin(), binary.end(), true) != binary.end()) {
    encoded.json_length = encoded.body.size();
    encoded.body += binary_data;
  }
  return encoded;
}

std::string error_body(const std::string& message) {
  return json{{"error", printable(message)}}.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace tsnative::server
