// The format of a model file, from its first bytes; what the core does with one it cannot run.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/errors.h"
#include "core/model.h"
#include "core/model_format.h"
#include "test_support.h"

namespace {

using tsnative::ModelFormat;
using tsnative::sniff_model_format;

ModelFormat sniff(const std::string& bytes) {
  return sniff_model_format(bytes.data(), bytes.size());
}

// ir_version 8, then producer_name "pytorch": how torch.onnx.export's files start.
const std::string kOnnxHeader("\x08\x08\x12\x07pytorch", 11);

TEST(ModelFormatTest, TellsTorchScriptFromOnnxFromAnythingElse) {
  EXPECT_EQ(sniff("PK\x03\x04rest"), ModelFormat::kTorchScript);
  EXPECT_EQ(sniff(kOnnxHeader), ModelFormat::kOnnx);
  EXPECT_EQ(sniff(std::string("\x08\x07\x3a\x10", 4)), ModelFormat::kOnnx);  // then the graph
  EXPECT_EQ(sniff(""), ModelFormat::kUnknown);
  EXPECT_EQ(sniff("\x08"), ModelFormat::kUnknown);
  EXPECT_EQ(sniff(std::string("\x08\x00\x12", 3)), ModelFormat::kUnknown);  // ir_version 0
  EXPECT_EQ(sniff(std::string("\x08\x08\x10", 3)),
            ModelFormat::kUnknown);                           // not a ModelProto field
  EXPECT_EQ(sniff("\x80\x02}q\x00"), ModelFormat::kUnknown);  // a bare pickle (torch.save, old)
  EXPECT_EQ(sniff("hello world"), ModelFormat::kUnknown);
  EXPECT_EQ(tsnative::model_format_name(ModelFormat::kOnnx), "ONNX");
}

class ModelFormatLoadTest : public tsnative_test::TempDirTest {};

TEST_F(ModelFormatLoadTest, AnOnnxModelIsSentToThePythonApi) {
  const auto path = tmp_.file("m.onnx");
  tsnative_test::write_bytes(path, std::vector<char>(kOnnxHeader.begin(), kOnnxHeader.end()));
  for (const bool from_memory : {false, true}) {
    try {
      if (from_memory) {
        tsnative::Model::load_from_memory(kOnnxHeader.data(), kOnnxHeader.size());
      } else {
        tsnative::Model::load(path);
      }
      FAIL() << "an ONNX model loaded";
    } catch (const tsnative::UnsupportedFormatError& e) {
      const std::string message = e.what();
      EXPECT_NE(message.find("is an ONNX model"), std::string::npos) << message;
      EXPECT_NE(message.find("tsnative.load"), std::string::npos) << message;
      EXPECT_NE(message.find(from_memory ? "in memory" : "m.onnx"), std::string::npos) << message;
    }
  }
}

}  // namespace
