#include "server/protocol.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>

#include <ATen/ATen.h>
#include <ATen/Dispatch_v2.h>
#include <simdjson.h>
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

// Requests are read with simdjson (gigabytes a second: a JSON tensor of a million numbers is
// parsed in a millisecond, where a DOM of nlohmann values took tens); responses are written
// with nlohmann-json, their numbers with std::to_chars.
using Element = simdjson::dom::element;
using ElementType = simdjson::dom::element_type;

const char* type_name(ElementType type) {
  switch (type) {
    case ElementType::ARRAY:
      return "array";
    case ElementType::OBJECT:
      return "object";
    case ElementType::INT64:
    case ElementType::UINT64:
    case ElementType::DOUBLE:
      return "number";
    case ElementType::STRING:
      return "string";
    case ElementType::BOOL:
      return "boolean";
    case ElementType::NULL_VALUE:
      return "null";
  }
  return "value";
}

// A value as the request wrote it, for messages (bounded: a hostile value may be huge).
std::string shown(Element value) {
  auto text = simdjson::minify(value);
  if (text.size() > 64) text = text.substr(0, 61) + "...";
  return text;
}

bool is_integer(Element value) {
  return value.type() == ElementType::INT64 || value.type() == ElementType::UINT64;
}

// A member of an object that must have a given JSON type, or nullopt where it is absent. An
// INT64 type stands for any whole number.
std::optional<Element> member(Element object, const char* key, ElementType type,
                              const char* type_name_wanted, const std::string& where) {
  Element value;
  if (object.at_key(key).get(value) != simdjson::SUCCESS || value.is_null()) return std::nullopt;
  const bool matches = type == ElementType::INT64 ? is_integer(value) : value.type() == type;
  if (!matches) {
    throw ProtocolError(where + ": '" + key + "' must be " + type_name_wanted + ", got " +
                        type_name(value.type()));
  }
  return value;
}

std::string string_of(Element value) { return std::string(value.get_string().value_unsafe()); }

// By value: value_unsafe() on the temporary result would hand back a dangling reference.
simdjson::dom::array array_of(Element value) { return value.get_array().value_unsafe(); }

std::vector<int64_t> parse_shape(Element tensor, const std::string& where,
                                 const RequestLimits& limits, int64_t& elements) {
  const auto shape = member(tensor, "shape", ElementType::ARRAY, "an array", where);
  if (!shape) throw ProtocolError(where + ": 'shape' is missing");
  std::vector<int64_t> sizes;
  for (const auto size : array_of(*shape)) {
    if (static_cast<int64_t>(sizes.size()) == limits.max_dimensions) break;  // refused below
    if (size.type() != ElementType::INT64 || size.get_int64().value_unsafe() < 0) {
      throw ProtocolError(where + ": 'shape' must hold sizes >= 0, got " + shown(size));
    }
    sizes.push_back(size.get_int64().value_unsafe());
  }
  if (array_of(*shape).size() > sizes.size()) sizes.push_back(0);  // one dimension too many
  elements = checked_elements(sizes, where, limits);
  return sizes;
}

// The elements of "data", flat or nested row-major, in order. Nesting deeper than the shape
// is malformed (and bounded, so a hostile body cannot recurse far).
void flatten(Element data, size_t depth, size_t max_depth, std::vector<Element>& out,
             const std::string& where) {
  if (data.type() != ElementType::ARRAY) {
    out.push_back(data);
    return;
  }
  if (depth >= max_depth) throw ProtocolError(where + ": 'data' is nested deeper than its shape");
  for (const auto element : array_of(data)) {
    flatten(element, depth + 1, max_depth, out, where);
  }
}

template <typename T>
T integer_element(Element value, const std::string& where, const char* datatype) {
  const auto fail = [&] {
    return ProtocolError(where + ": " + shown(value) + " is not a " + datatype + " value");
  };
  if (value.type() == ElementType::UINT64) {
    const auto number = value.get_uint64().value_unsafe();
    if (number > static_cast<uint64_t>(std::numeric_limits<T>::max())) throw fail();
    return static_cast<T>(number);
  }
  if (value.type() != ElementType::INT64) throw fail();
  const auto number = value.get_int64().value_unsafe();
  if constexpr (std::is_unsigned_v<T>) {
    if (number < 0 || static_cast<uint64_t>(number) > std::numeric_limits<T>::max()) throw fail();
  } else {
    if (number < std::numeric_limits<T>::min() || number > std::numeric_limits<T>::max()) {
      throw fail();
    }
  }
  return static_cast<T>(number);
}

double number_element(Element value, const std::string& where, const char* datatype) {
  switch (value.type()) {
    case ElementType::DOUBLE:
      return value.get_double().value_unsafe();
    case ElementType::INT64:
      return static_cast<double>(value.get_int64().value_unsafe());
    case ElementType::UINT64:
      return static_cast<double>(value.get_uint64().value_unsafe());
    default:
      throw ProtocolError(where + ": " + shown(value) + " is not a " + datatype + " value");
  }
}

// Half a float unit (2^103) past float's largest: doubles from here on round to infinity.
constexpr double kFloatOverflow = std::numeric_limits<float>::max() + 0x1p103;

template <typename T>
void fill(const std::vector<Element>& elements, at::Tensor& tensor, const std::string& where,
          const char* datatype) {
  auto* out = tensor.data_ptr<T>();
  for (size_t i = 0; i < elements.size(); ++i) {
    const auto value = elements[i];
    if constexpr (std::is_same_v<T, bool>) {
      if (value.type() != ElementType::BOOL) {
        throw ProtocolError(where + ": " + shown(value) + " is not a BOOL value");
      }
      out[i] = value.get_bool().value_unsafe();
    } else if constexpr (std::is_floating_point_v<T>) {
      const auto number = number_element(value, where, datatype);
      // A double that rounds past float's largest has no float value (the conversion is
      // undefined); one within half a unit of it (3.4028235e38, as float32 prints) rounds to it.
      if (std::is_same_v<T, float> && std::abs(number) >= kFloatOverflow) {
        throw ProtocolError(where + ": " + shown(value) + " is out of " + datatype + "'s range");
      }
      out[i] = static_cast<T>(number);
    } else {
      out[i] = integer_element<T>(value, where, datatype);
    }
  }
}

// The tensor of a numeric input given as JSON.
at::Tensor tensor_from_json(const std::vector<Element>& elements, DataType datatype,
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

ProtocolTensor parse_input(Element input, std::string_view& binary, const RequestLimits& limits) {
  if (input.type() != ElementType::OBJECT) {
    throw ProtocolError("each of 'inputs' must be an object");
  }
  const auto name = member(input, "name", ElementType::STRING, "a string", "an input");
  if (!name) throw ProtocolError("an input has no 'name'");
  ProtocolTensor tensor;
  tensor.name = string_of(*name);
  const auto where = field("input", tensor.name);
  const auto datatype = member(input, "datatype", ElementType::STRING, "a string", where);
  if (!datatype) throw ProtocolError(where + ": 'datatype' is missing");
  const auto parsed = parse_datatype(string_of(*datatype));
  if (!parsed) {
    throw ProtocolError(where + ": unknown datatype " + tsnative::quoted(string_of(*datatype)));
  }
  tensor.datatype = *parsed;
  int64_t elements = 0;
  tensor.shape = parse_shape(input, where, limits, elements);

  const auto parameters = member(input, "parameters", ElementType::OBJECT, "an object", where);
  const auto binary_size = parameters ? member(*parameters, "binary_data_size", ElementType::INT64,
                                               "a whole number", where)
                                      : std::nullopt;
  std::optional<Element> data;
  if (Element given; input.at_key("data").get(given) == simdjson::SUCCESS) data = given;
  if (binary_size && data) {
    throw ProtocolError(where + ": has both 'data' and binary_data_size");
  }
  if (binary_size) {
    // A size past int64 reads as 0 here and fails the size checks below.
    int64_t size = 0;
    if (binary_size->type() == ElementType::INT64) size = binary_size->get_int64().value_unsafe();
    if (binary_size->type() == ElementType::UINT64 || size < 0 ||
        static_cast<uint64_t>(size) > binary.size()) {
      throw ProtocolError(where + ": binary_data_size " + std::to_string(size) + " but " +
                          std::to_string(binary.size()) + " bytes of binary data are left");
    }
    fill_from_raw(tensor, binary.substr(0, static_cast<size_t>(size)), where);
    binary.remove_prefix(static_cast<size_t>(size));
    return tensor;
  }
  if (!data) throw ProtocolError(where + ": 'data' is missing");
  std::vector<Element> values;
  values.reserve(static_cast<size_t>(elements));
  flatten(*data, 0, tensor.shape.size() + 1, values, where);
  if (static_cast<int64_t>(values.size()) != elements) {
    throw ProtocolError(where + ": 'data' has " + std::to_string(values.size()) +
                        " elements, its shape " + std::to_string(elements));
  }
  if (tensor.datatype == DataType::kBytes) {
    for (const auto value : values) {
      if (value.type() != ElementType::STRING) {
        throw ProtocolError(where + ": " + shown(value) + " is not a BYTES value (a string)");
      }
      tensor.bytes.push_back(string_of(value));
    }
    return tensor;
  }
  tensor.tensor = tensor_from_json(values, tensor.datatype, tensor.shape, where);
  return tensor;
}

RequestedOutput parse_output(Element output) {
  if (output.type() != ElementType::OBJECT) {
    throw ProtocolError("each of 'outputs' must be an object");
  }
  const auto name = member(output, "name", ElementType::STRING, "a string", "an output");
  if (!name) throw ProtocolError("an output has no 'name'");
  RequestedOutput requested;
  requested.name = string_of(*name);
  const auto where = field("output", requested.name);
  const auto parameters = member(output, "parameters", ElementType::OBJECT, "an object", where);
  if (!parameters) return requested;
  if (const auto binary =
          member(*parameters, "binary_data", ElementType::BOOL, "true or false", where)) {
    requested.binary_data = binary->get_bool().value_unsafe();
  }
  if (const auto classification =
          member(*parameters, "classification", ElementType::INT64, "a whole number", where)) {
    const auto k = classification->type() == ElementType::INT64
                       ? classification->get_int64().value_unsafe()
                       : std::numeric_limits<int64_t>::max();
    requested.classification = k;
    if (requested.classification < 1) {
      throw ProtocolError(where + ": 'classification' must be at least 1");
    }
  }
  return requested;
}

template <typename T>
void append_number(T value, std::string& out) {
  if constexpr (std::is_same_v<T, bool>) {
    out += value ? "true" : "false";
  } else {
    if constexpr (std::is_floating_point_v<T>) {
      if (!std::isfinite(value)) {  // JSON has no NaN or infinity
        out += "null";
        return;
      }
    }
    std::array<char, 32> text;
    // The fewest digits that read back as this value (a float's own, not its double's).
    const auto end = std::to_chars(text.data(), text.data() + text.size(), value).ptr;
    out.append(text.data(), end);
    if constexpr (std::is_floating_point_v<T>) {
      // A whole number still reads as a floating-point one: 2.0, not 2.
      if (std::find_if(text.data(), end, [](char c) { return c == '.' || c == 'e'; }) == end) {
        out += ".0";
      }
    }
  }
}

// A tensor's values as a JSON array: numbers (half and bfloat16 widened to float) or booleans.
void append_values(const at::Tensor& tensor, std::string& out) {
  const auto flat = tensor.contiguous().reshape({-1});
  const auto dtype = flat.scalar_type();
  if (dtype == c10::ScalarType::Half || dtype == c10::ScalarType::BFloat16) {
    append_values(flat.to(c10::ScalarType::Float), out);
    return;
  }
  const auto count = static_cast<size_t>(flat.numel());
  out += '[';
  AT_DISPATCH_V2(dtype, "append_values", AT_WRAP([&] {
                   const auto* values = flat.const_data_ptr<scalar_t>();
                   for (size_t i = 0; i < count; ++i) {
                     if (i) out += ',';
                     append_number(values[i], out);
                   }
                 }),
                 AT_EXPAND(AT_ALL_TYPES), c10::kBool, AT_EXPAND(AT_BAREBONES_UNSIGNED_TYPES));
  out += ']';
}

std::string dumped(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
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

int64_t checked_elements(const std::vector<int64_t>& shape, const std::string& where,
                         const RequestLimits& limits) {
  if (static_cast<int64_t>(shape.size()) > limits.max_dimensions) {
    throw ProtocolError(where + ": 'shape' has " + std::to_string(shape.size()) +
                        " dimensions, more than " + std::to_string(limits.max_dimensions));
  }
  int64_t elements = 1;
  for (const auto size : shape) {
    if (size < 0) {
      throw ProtocolError(where + ": 'shape' must hold sizes >= 0, got " + std::to_string(size));
    }
    if (size != 0 && elements > limits.max_elements / size) {
      throw ProtocolError(where + ": the shape has more than " +
                          std::to_string(limits.max_elements) + " elements");
    }
    elements *= size;
  }
  return elements;
}

void fill_from_raw(ProtocolTensor& tensor, std::string_view bytes, const std::string& where) {
  int64_t elements = 1;
  for (const auto size : tensor.shape) elements *= size;  // checked_elements has bounded it
  if (tensor.datatype == DataType::kBytes) {
    tensor.bytes = split_bytes(bytes, elements, where);
    return;
  }
  const auto dtype = *scalar_type(tensor.datatype);
  const auto expected = elements * static_cast<int64_t>(c10::elementSize(dtype));
  if (static_cast<int64_t>(bytes.size()) != expected) {
    throw ProtocolError(where + ": " + std::to_string(bytes.size()) +
                        " bytes of data, its shape and datatype take " + std::to_string(expected));
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
  if (!bytes.empty()) std::memcpy(tensor.tensor.data_ptr(), bytes.data(), bytes.size());
}

std::string raw_bytes(const ProtocolTensor& tensor) {
  std::string out;
  append_binary(tensor, out);
  return out;
}

InferRequest parse_infer_request(std::string_view body, std::optional<size_t> json_length,
                                 const RequestLimits& limits) {
  if (json_length && *json_length > body.size()) {
    throw ProtocolError("Inference-Header-Content-Length is " + std::to_string(*json_length) +
                        " but the body has " + std::to_string(body.size()) + " bytes");
  }
  const auto header = body.substr(0, json_length.value_or(body.size()));
  auto binary = body.substr(header.size());
  // The parser owns what the elements point into: it lives as long as this call.
  simdjson::dom::parser parser;
  Element request;
  if (const auto error = parser.parse(header.data(), header.size()).get(request)) {
    throw ProtocolError(std::string("the request is not valid JSON: ") +
                        simdjson::error_message(error));
  }
  if (request.type() != ElementType::OBJECT) {
    throw ProtocolError("the request must be a JSON object");
  }
  InferRequest parsed;
  if (const auto id = member(request, "id", ElementType::STRING, "a string", "the request")) {
    parsed.id = string_of(*id);
  }
  if (const auto parameters =
          member(request, "parameters", ElementType::OBJECT, "an object", "the request")) {
    if (const auto binary_output = member(*parameters, "binary_data_output", ElementType::BOOL,
                                          "true or false", "the request")) {
      parsed.binary_data_output = binary_output->get_bool().value_unsafe();
    }
  }
  const auto inputs = member(request, "inputs", ElementType::ARRAY, "an array", "the request");
  if (!inputs || array_of(*inputs).size() == 0) {
    throw ProtocolError("the request has no 'inputs'");
  }
  for (const auto input : array_of(*inputs)) {
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
  if (const auto outputs =
          member(request, "outputs", ElementType::ARRAY, "an array", "the request")) {
    for (const auto output : array_of(*outputs)) {
      parsed.outputs.push_back(parse_output(output));
    }
  }
  return parsed;
}

EncodedResponse encode_infer_response(const std::string& model_name, const std::string& version,
                                      const std::string& id,
                                      const std::vector<ProtocolTensor>& outputs,
                                      const std::vector<bool>& binary) {
  json head = {{"model_name", model_name}, {"model_version", version}};
  if (!id.empty()) head["id"] = id;
  EncodedResponse encoded;
  encoded.body = dumped(head);
  encoded.body.pop_back();  // its closing brace: the outputs follow
  encoded.body += R"(,"outputs":[)";
  std::string binary_data;
  for (size_t i = 0; i < outputs.size(); ++i) {
    const auto& tensor = outputs[i];
    json entry = {{"name", tensor.name},
                  {"datatype", datatype_name(tensor.datatype)},
                  {"shape", tensor.shape}};
    const bool numbers = !binary[i] && tensor.datatype != DataType::kBytes;
    if (binary[i]) {
      const auto before = binary_data.size();
      append_binary(tensor, binary_data);
      entry["parameters"] = {{"binary_data_size", binary_data.size() - before}};
    } else if (!numbers) {
      // JSON strings must be UTF-8: bytes that are not are shown escaped, as messages are.
      json strings = json::array();
      for (const auto& element : tensor.bytes) strings.push_back(printable(element));
      entry["data"] = std::move(strings);
    }
    if (i) encoded.body += ',';
    encoded.body += dumped(entry);
    if (numbers) {  // written here rather than as a DOM of a million JSON values
      encoded.body.pop_back();
      encoded.body += R"(,"data":)";
      append_values(tensor.tensor, encoded.body);
      encoded.body += '}';
    }
  }
  encoded.body += "]}";
  if (!binary_data.empty() || std::find(binary.begin(), binary.end(), true) != binary.end()) {
    encoded.json_length = encoded.body.size();
    encoded.body += binary_data;
  }
  return encoded;
}

const std::vector<std::string>& server_extensions() {
  static const std::vector<std::string> extensions{"binary_tensor_data", "classification",
                                                   "model_repository"};
  return extensions;
}

std::string error_body(const std::string& message) {
  return dumped(json{{"error", printable(message)}});
}

}  // namespace tsnative::server
