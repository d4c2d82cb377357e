// The server's request parser (server/protocol.h): any body, with or without an
// Inference-Header-Content-Length. The first byte picks which: even, the whole body is JSON;
// odd, the next two bytes (little-endian, modulo the body's size + 1) are the JSON's length
// and the rest is binary tensor data. Whatever parses is encoded back as a response (each
// tensor as raw bytes or as JSON, by its position), so both directions run on hostile data.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string_view>

#include "fuzz_support.h"
#include "server/protocol.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 3) return 0;
  std::optional<size_t> json_length;
  std::string_view body(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] % 2 == 1) {
    body.remove_prefix(2);
    json_length =
        (static_cast<size_t>(data[1]) | static_cast<size_t>(data[2]) << 8) % (body.size() + 1);
  }
  // Small caps, so that a shape of a billion elements is refused rather than allocated.
  tsnative::server::RequestLimits limits;
  limits.max_elements = 1 << 20;
  try {
    const auto request = tsnative::server::parse_infer_request(body, json_length, limits);
    std::vector<bool> binary;
    for (size_t i = 0; i < request.inputs.size(); ++i) binary.push_back(i % 2 == 0);
    const auto response =
        tsnative::server::encode_infer_response("m", "1", request.id, request.inputs, binary);
    if (response.json_length && *response.json_length > response.body.size()) std::abort();
  } catch (const tsnative::server::ProtocolError& error) {
    if (std::string_view(error.what()).empty()) {
      std::fprintf(stderr, "a ProtocolError with an empty message\n");
      std::abort();
    }
  }
  return 0;
}
