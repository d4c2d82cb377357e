// The format of a model file, from its first bytes; what the core does with one it cannot run.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include <caffe2/serialize/file_adapter.h>
#include <caffe2/serialize/inline_container.h>

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

// A zip archive as PyTorch writes one, holding `records` (each one byte).
void write_archive(const std::string& path, const std::vector<std::string>& records) {
  caffe2::serialize::PyTorchStreamWriter writer(path);
  for (const auto& record : records) writer.writeRecord(record, "x", 1);
  writer.writeEndOfFile();
}

TEST_F(ModelFormatLoadTest, AnAotInductorPackageIsToldFromATorchScriptArchiveByItsRecords) {
  const auto package = tmp_.file("m.pt2"), archive = tmp_.file("m.pt");
  write_archive(package, {"data/aotinductor/model/x.wrapper.so", "archive_format"});
  write_archive(archive, {"data.pkl", "data/0", "constants.pkl"});
  const auto format = [](const std::string& path) {
    return tsnative::archive_model_format(std::make_shared<caffe2::serialize::FileAdapter>(path));
  };
  EXPECT_EQ(format(package), ModelFormat::kAotInductor);
  EXPECT_EQ(format(archive), ModelFormat::kTorchScript);
  EXPECT_EQ(tsnative::model_format_name(ModelFormat::kAotInductor), "AOTInductor");

  // Not a loadable package (no compiled model in it): a LoadError naming it, no crash.
  try {
    tsnative::Model::load(package);
    FAIL() << "a package without a compiled model loaded";
  } catch (const tsnative::LoadError& e) {
    EXPECT_NE(std::string(e.what()).find("m.pt2"), std::string::npos) << e.what();
  }
  const auto bytes = tsnative_test::read_bytes(package);
  try {
    tsnative::Model::load_from_memory(bytes.data(), bytes.size());
    FAIL() << "a package loaded from memory";
  } catch (const tsnative::UnsupportedFormatError& e) {
    EXPECT_NE(std::string(e.what()).find("loads from a file"), std::string::npos) << e.what();
  }
}

}  // namespace
