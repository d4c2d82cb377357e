// KServe's Open Inference Protocol (v2) as bytes: an infer request's body (JSON, or JSON
// followed by raw tensor bytes under Triton's binary tensor data extension) parsed into
// tensors, and an infer response's tensors encoded back. No HTTP and no model here: what
// arrives from a client is checked in this file alone (tests/fuzz/fuzz_infer_request.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/ScalarType.h>

namespace tsnative::server {

// The protocol's tensor datatypes.
enum class DataType {
  kBool,
  kUint8,
  kUint16,
  kUint32,
  kUint64,
  kInt8,
  kInt16,
  kInt32,
  kInt64,
  kFp16,
  kFp32,
  kFp64,
  kBf16,
  kBytes,
};

// "FP32" -> kFp32; nullopt for a name the protocol does not have.
std::optional<DataType> parse_datatype(const std::string& name);
const char* datatype_name(DataType datatype);
// The tensor dtype of a datatype (nullopt for BYTES, which are strings), and the reverse
// (nullopt for a dtype the protocol cannot carry: complex, quantized).
std::optional<c10::ScalarType> scalar_type(DataType datatype);
std::optional<DataType> datatype_of(c10::ScalarType dtype);

// A request the server refuses: the message names the field, `status` is the HTTP status the
// client gets (400 for a malformed request, 404 for an unknown model).
class ProtocolError : public std::runtime_error {
 public:
  explicit ProtocolError(const std::string& message, int status = 400)
      : std::runtime_error(message), status_(status) {}
  int status() const { return status_; }

 private:
  int status_;
};

// One tensor of a request or response: numeric data in `tensor` (contiguous, CPU, `shape`),
// or the elements of a BYTES tensor in `bytes` (row-major).
struct ProtocolTensor {
  std::string name;
  DataType datatype = DataType::kFp32;
  std::vector<int64_t> shape;
  at::Tensor tensor;
  std::vector<std::string> bytes;
};

// An output the client asked for by name: as raw bytes or JSON, or as Triton's classification
// extension's top-k strings ("value:index:label") when classification > 0.
struct RequestedOutput {
  std::string name;
  std::optional<bool> binary_data;  // unset: the request's binary_data_output
  int64_t classification = 0;
};

struct InferRequest {
  std::string id;
  std::vector<ProtocolTensor> inputs;
  std::vector<RequestedOutput> outputs;  // empty: every output
  bool binary_data_output = false;       // the request's default for its outputs
};

// Caps on what one request may make the server allocate, beyond its body's size: a shape's
// element count, and a BYTES element count (each is a string of its own).
struct RequestLimits {
  int64_t max_elements = int64_t{1} << 31;
  int64_t max_dimensions = 16;
};

// Parses an infer request body. `json_length` is the Inference-Header-Content-Length header:
// the body's first json_length bytes are the JSON, the rest the inputs' binary data in order
// (nullopt: the whole body is JSON). Throws ProtocolError naming the field: malformed JSON, a
// missing name / datatype / shape, an unknown datatype, data that does not fill the shape or
// does not fit the datatype, binary data of the wrong size or truncated.
InferRequest parse_infer_request(std::string_view body, std::optional<size_t> json_length,
                                 const RequestLimits& limits = {});

// The number of elements of a request's shape. Throws ProtocolError: a negative size, more
// dimensions or elements than the limits allow.
int64_t checked_elements(const std::vector<int64_t>& shape, const std::string& where,
                         const RequestLimits& limits);

// Fills a tensor whose name, datatype and (checked) shape are set from raw bytes, as Triton's
// binary data and gRPC's raw contents carry them: the elements little-endian, row-major;
// BYTES elements each a 4-byte little-endian length, then its bytes. Throws ProtocolError
// naming `where`: the wrong byte count, a BOOL byte other than 0 or 1, truncated BYTES.
void fill_from_raw(ProtocolTensor& tensor, std::string_view bytes, const std::string& where);

// A tensor's raw bytes, the same layout.
std::string raw_bytes(const ProtocolTensor& tensor);

// A response body: JSON alone, or JSON then the binary outputs' bytes (json_length set: the
// Inference-Header-Content-Length the client reads).
struct EncodedResponse {
  std::string body;
  std::optional<size_t> json_length;
};

// Encodes outputs; binary[i] says whether outputs[i] goes as raw bytes.
EncodedResponse encode_infer_response(const std::string& model_name, const std::string& version,
                                      const std::string& id,
                                      const std::vector<ProtocolTensor>& outputs,
                                      const std::vector<bool>& binary);

// The protocol extensions this server implements (its server metadata lists them).
const std::vector<std::string>& server_extensions();

// The protocol's error body: {"error": message}.
std::string error_body(const std::string& message);

}  // namespace tsnative::server
