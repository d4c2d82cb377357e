// The server's protocol layer against hand-written requests: JSON and binary tensors of each
// datatype, the errors that name the field, responses encoded as clients decode them, and
// which requests the batcher may stack.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "server/batcher.h"
#include "server/protocol.h"

namespace {

using tsnative::server::DataType;
using tsnative::server::encode_infer_response;
using tsnative::server::parse_infer_request;
using tsnative::server::ProtocolError;

std::string error_of(const std::string& body, std::optional<size_t> json_length = std::nullopt) {
  try {
    parse_infer_request(body, json_length);
  } catch (const ProtocolError& e) {
    EXPECT_EQ(e.status(), 400);
    return e.what();
  }
  ADD_FAILURE() << "parsed: " << body;
  return "";
}

TEST(Protocol, JsonTensorsFlatOrNested) {
  const auto request = parse_infer_request(
      R"({"id": "a", "inputs": [
           {"name": "x", "datatype": "FP32", "shape": [2, 2], "data": [[1, 2.5], [3, 4]]},
           {"name": "n", "datatype": "INT8", "shape": [3], "data": [-128, 0, 127]},
           {"name": "b", "datatype": "BOOL", "shape": [2], "data": [true, false]},
           {"name": "h", "datatype": "FP16", "shape": [1], "data": [0.5]},
           {"name": "s", "datatype": "BYTES", "shape": [2], "data": ["ab", ""]}],
         "outputs": [{"name": "y", "parameters": {"classification": 2, "binary_data": true}}]})",
      std::nullopt);
  EXPECT_EQ(request.id, "a");
  ASSERT_EQ(request.inputs.size(), 5u);
  EXPECT_TRUE(
      at::equal(request.inputs[0].tensor, at::tensor({1.0f, 2.5f, 3.0f, 4.0f}).reshape({2, 2})));
  EXPECT_TRUE(at::equal(request.inputs[1].tensor, at::tensor({-128, 0, 127}, at::kChar)));
  EXPECT_EQ(request.inputs[2].tensor.scalar_type(), at::kBool);
  EXPECT_TRUE(request.inputs[2].tensor[0].item<bool>());
  EXPECT_EQ(request.inputs[3].tensor.scalar_type(), at::kHalf);
  EXPECT_EQ(request.inputs[3].tensor[0].item<float>(), 0.5f);
  EXPECT_EQ(request.inputs[4].bytes, (std::vector<std::string>{"ab", ""}));
  ASSERT_EQ(request.outputs.size(), 1u);
  EXPECT_EQ(request.outputs[0].classification, 2);
  EXPECT_EQ(request.outputs[0].binary_data, true);
}

TEST(Protocol, BinaryTensorData) {
  const std::string header =
      R"({"inputs": [{"name": "x", "datatype": "INT32", "shape": [2], "parameters": {"binary_data_size": 8}},
                      {"name": "s", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": 7}}]})";
  const int32_t values[2] = {7, -9};
  std::string body = header + std::string(reinterpret_cast<const char*>(values), 8);
  body += std::string("\x03\x00\x00\x00", 4) + "xyz";
  const auto request = parse_infer_request(body, header.size());
  EXPECT_TRUE(at::equal(request.inputs[0].tensor, at::tensor({7, -9}, at::kInt)));
  EXPECT_EQ(request.inputs[1].bytes, std::vector<std::string>{"xyz"});
}

TEST(Protocol, ErrorsNameTheField) {
  // Each JSON body and what its error must say.
  const std::pair<std::string, std::string> cases[] = {
      {"{not json", "not valid JSON"},
      {R"({"inputs": []})", "no 'inputs'"},
      {R"({"inputs": [{"name": "x", "datatype": "FP33", "shape": [1], "data": [1]}]})",
       "unknown datatype 'FP33'"},
      {R"({"inputs": [{"name": "x", "datatype": "FP32", "shape": [3], "data": [1, 2]}]})",
       "input 'x': 'data' has 2 elements, its shape 3"},
      {R"({"inputs": [{"name": "x", "datatype": "UINT8", "shape": [1], "data": [256]}]})",
       "256 is not a UINT8 value"},
      {R"({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1e300]}]})",
       "out of FP32's range"},
      {R"({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [3.40282357e38]}]})",
       "out of FP32's range"},
      {R"({"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1], "data": []}]})",
       "sizes >= 0"},
      {R"({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1000000, 1000000, 1000000]}]})",
       "more than"},
  };
  for (const auto& [body, message] : cases) {
    EXPECT_NE(error_of(body).find(message), std::string::npos) << body;
  }
  const std::string header =
      R"({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "parameters": {"binary_data_size": 8}}]})";
  EXPECT_NE(error_of(header + "1234", header.size()).find("4 bytes of binary data are left"),
            std::string::npos);
  EXPECT_NE(error_of(header + "123456789", header.size()).find("1 bytes of binary data follow"),
            std::string::npos);
  const std::string bools =
      R"({"inputs": [{"name": "b", "datatype": "BOOL", "shape": [2], "parameters": {"binary_data_size": 2}}]})";
  EXPECT_NE(error_of(bools + std::string("\x01\x02", 2), bools.size()).find("neither 0 nor 1"),
            std::string::npos);
  EXPECT_NE(error_of(header, header.size() + 1).find("Inference-Header-Content-Length"),
            std::string::npos);
}

TEST(Protocol, ResponsesJsonAndBinary) {
  tsnative::server::ProtocolTensor scores{"y", DataType::kFp32, {2}, at::tensor({0.5f, -1.0f}), {}};
  tsnative::server::ProtocolTensor labels{"l", DataType::kBytes, {1}, {}, {"0.5:0:cat"}};
  const auto as_json = encode_infer_response("m", "1", "", {scores, labels}, {false, false});
  EXPECT_FALSE(as_json.json_length);
  EXPECT_NE(as_json.body.find(R"("data":[0.5,-1.0])"), std::string::npos);
  EXPECT_NE(as_json.body.find(R"("data":["0.5:0:cat"])"), std::string::npos);
  const auto as_binary = encode_infer_response("m", "1", "7", {scores, labels}, {true, true});
  ASSERT_TRUE(as_binary.json_length);
  const auto binary = as_binary.body.substr(*as_binary.json_length);
  ASSERT_EQ(binary.size(), 8u + 4u + 9u);
  float values[2];
  std::memcpy(values, binary.data(), 8);
  EXPECT_EQ(values[0], 0.5f);
  EXPECT_EQ(values[1], -1.0f);
  EXPECT_EQ(binary.substr(8, 4), std::string("\x09\x00\x00\x00", 4));
  EXPECT_EQ(binary.substr(12), "0.5:0:cat");
  EXPECT_NE(as_binary.body.find(R"("binary_data_size":8)"), std::string::npos);
}

// What a response writes as JSON numbers reads back, bit for bit, as the datatype's values:
// the body parsed by nlohmann-json (an independent reader), its data sent back as a request.
TEST(Protocol, JsonNumbersReadBackExactly) {
  const auto floats =
      at::cat({at::randn({1000}) * 1e3,
               at::tensor({0.1f, 3.0f, -0.0f, 1e-45f, 3.4028235e38f, 1.17549435e-38f})});
  const auto doubles = at::cat({at::randn({200}, at::kDouble), at::tensor({0.1, 1e300, 5e-324})});
  const auto int64s = at::tensor(
      {std::numeric_limits<int64_t>::min(), int64_t{0}, std::numeric_limits<int64_t>::max()});
  auto uint64s = at::empty({2}, at::kUInt64);
  uint64s.data_ptr<uint64_t>()[0] = 0;
  uint64s.data_ptr<uint64_t>()[1] = std::numeric_limits<uint64_t>::max();
  const std::vector<std::pair<DataType, at::Tensor>> cases{{DataType::kFp32, floats},
                                                           {DataType::kFp64, doubles},
                                                           {DataType::kInt64, int64s},
                                                           {DataType::kUint64, uint64s}};
  for (const auto& [datatype, values] : cases) {
    const tsnative::server::ProtocolTensor output{"y", datatype, {values.numel()}, values, {}};
    const auto body = encode_infer_response("m", "1", "", {output}, {false}).body;
    const auto response = nlohmann::json::parse(body);
    const auto& data = response["outputs"][0]["data"];
    ASSERT_EQ(data.size(), static_cast<size_t>(values.numel()));
    const nlohmann::json request = {{"inputs",
                                     {{{"name", "x"},
                                       {"datatype", tsnative::server::datatype_name(datatype)},
                                       {"shape", {values.numel()}},
                                       {"data", nullptr}}}}};
    auto text = request.dump();
    text.replace(text.find("null"), 4, data.dump());  // the response's own digits
    const auto read = parse_infer_request(text, std::nullopt).inputs[0].tensor;
    ASSERT_EQ(read.scalar_type(), values.scalar_type());
    EXPECT_EQ(std::memcmp(read.data_ptr(), values.data_ptr(), values.nbytes()), 0)
        << tsnative::server::datatype_name(datatype);
  }
  // A float in its own fewest digits, a whole one still floating-point, NaN as JSON's null.
  const tsnative::server::ProtocolTensor special{
      "y", DataType::kFp32, {3}, at::tensor({0.1f, 2.0f, std::nanf("")}), {}};
  EXPECT_NE(
      encode_infer_response("m", "1", "", {special}, {false}).body.find(R"("data":[0.1,2.0,null])"),
      std::string::npos);
}

TEST(Protocol, EveryDatatypeMapsBothWays) {
  for (const char* name : {"BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32",
                           "INT64", "FP16", "FP32", "FP64", "BF16"}) {
    const auto datatype = tsnative::server::parse_datatype(name);
    ASSERT_TRUE(datatype) << name;
    EXPECT_STREQ(tsnative::server::datatype_name(*datatype), name);
    EXPECT_EQ(tsnative::server::datatype_of(*tsnative::server::scalar_type(*datatype)), datatype);
  }
  EXPECT_FALSE(tsnative::server::scalar_type(DataType::kBytes));
  EXPECT_FALSE(tsnative::server::datatype_of(at::kComplexFloat));
}

TEST(Batcher, StacksOnlyWhatDiffersInRows) {
  using tsnative::server::stackable;
  const auto a = at::zeros({2, 3});
  EXPECT_TRUE(stackable({a}, {at::zeros({5, 3})}));
  EXPECT_FALSE(stackable({a}, {at::zeros({2, 4})}));
  EXPECT_FALSE(stackable({a}, {at::zeros({2, 3}, at::kDouble)}));
  EXPECT_FALSE(stackable({a}, {a, a}));
  EXPECT_FALSE(stackable({at::zeros({})}, {at::zeros({})}));
}

}  // namespace
