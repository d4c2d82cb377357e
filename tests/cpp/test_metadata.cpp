// Metadata: the JSON a model archive carries (parse_metadata / to_json), label files, the
// built-in ImageNet names, and Model::load reading the metadata from a TorchScript archive
// saved here in C++ with the JSON as an extra file.
#include "core/metadata.h"

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/errors.h"
#include "core/image.h"
#include "core/model.h"
#include "test_support.h"

namespace {

using tsnative::ColorMode;
using tsnative::InputError;
using tsnative::LoadError;
using tsnative::Metadata;
using tsnative::Model;
using tsnative::parse_metadata;
using tsnative::Preprocess;
using tsnative::read_labels;
using tsnative::to_json;
using tsnative_test::make_linear_module;
using tsnative_test::ThrowsWith;
using tsnative_test::write_bytes;

using Labels = std::vector<std::string>;

void write_text(const std::string& path, const std::string& text) {
  write_bytes(path, std::vector<char>(text.begin(), text.end()));
}

void expect_preprocess_eq(const Preprocess& actual, const Preprocess& expected) {
  EXPECT_EQ(actual.resize, expected.resize);
  EXPECT_EQ(actual.crop, expected.crop);
  EXPECT_EQ(actual.mean, expected.mean);
  EXPECT_EQ(actual.std, expected.std);
  EXPECT_EQ(actual.color, expected.color);
}

// Every field set, none of them to its default.
Metadata full_metadata() {
  Metadata metadata;
  metadata.labels = {"cat", "dog", "tiger, Panthera tigris", "caf\xC3\xA9"};
  Preprocess preprocess;
  preprocess.resize = 40;
  preprocess.crop = 32;
  preprocess.mean = {0.5};
  preprocess.std = {0.25};
  preprocess.color = ColorMode::kGrayscale;
  metadata.preprocess = preprocess;
  metadata.input_shape = {1, 1, 32, 32};
  metadata.tsnative_version = "9.8.7";
  metadata.export_method = "trace";
  return metadata;
}

// --- parse_metadata / to_json -------------------------------------------------------------

TEST(MetadataJson, RoundTripKeepsEveryField) {
  const Metadata expected = full_metadata();
  const Metadata actual = parse_metadata(to_json(expected), "'model.pt'");
  EXPECT_EQ(actual.labels, expected.labels);
  ASSERT_TRUE(actual.preprocess.has_value());
  expect_preprocess_eq(*actual.preprocess, *expected.preprocess);
  EXPECT_EQ(actual.input_shape, expected.input_shape);
  EXPECT_EQ(actual.tsnative_version, "9.8.7");
  EXPECT_EQ(actual.export_method, "trace");
}

TEST(MetadataJson, RoundTripWithoutPreprocessing) {
  Metadata expected = full_metadata();
  expected.preprocess.reset();
  const Metadata actual = parse_metadata(to_json(expected), "'model.pt'");
  EXPECT_FALSE(actual.preprocess.has_value());
  EXPECT_EQ(actual.labels, expected.labels);
}

TEST(MetadataJson, ToJsonWritesTheDocumentedKeys) {
  // Read back with nlohmann directly, not with parse_metadata: the format other tools see.
  const auto document = nlohmann::json::parse(to_json(full_metadata()));
  EXPECT_EQ(document.at("format"), "tsnative-metadata");
  EXPECT_EQ(document.at("version"), 1);
  EXPECT_EQ(document.at("tsnative_version"), "9.8.7");
  EXPECT_EQ(document.at("export_method"), "trace");
  EXPECT_EQ(document.at("labels").get<Labels>(), full_metadata().labels);
  EXPECT_EQ(document.at("input_shape").get<std::vector<int64_t>>(),
            (std::vector<int64_t>{1, 1, 32, 32}));
  const auto& preprocess = document.at("preprocess");
  EXPECT_EQ(preprocess.at("resize"), 40);
  EXPECT_EQ(preprocess.at("crop"), 32);
  EXPECT_EQ(preprocess.at("mean").get<std::vector<double>>(), std::vector<double>{0.5});
  EXPECT_EQ(preprocess.at("std").get<std::vector<double>>(), std::vector<double>{0.25});
  EXPECT_EQ(preprocess.at("color"), "grayscale");

  Metadata without = full_metadata();
  without.preprocess.reset();
  EXPECT_TRUE(nlohmann::json::parse(to_json(without)).at("preprocess").is_null());
}

TEST(MetadataJson, MissingFieldsTakeDefaults) {
  const Metadata empty = parse_metadata("{}", "'model.pt'");
  EXPECT_TRUE(empty.labels.empty());
  EXPECT_FALSE(empty.preprocess.has_value());
  EXPECT_TRUE(empty.input_shape.empty());
  EXPECT_EQ(empty.tsnative_version, "");
  EXPECT_EQ(empty.export_method, "");

  EXPECT_FALSE(parse_metadata(R"({"preprocess": null})", "'model.pt'").preprocess.has_value());

  // A partial preprocess: the rest are the ImageNet defaults of Preprocess.
  const Metadata partial =
      parse_metadata(R"({"labels": ["a"], "preprocess": {"crop": 100}})", "'m'");
  EXPECT_EQ(partial.labels, Labels{"a"});
  ASSERT_TRUE(partial.preprocess.has_value());
  Preprocess expected;
  expected.crop = 100;
  expect_preprocess_eq(*partial.preprocess, expected);
  EXPECT_EQ(partial.preprocess->resize, 256);
  EXPECT_EQ(partial.preprocess->mean, (std::vector<double>{0.485, 0.456, 0.406}));
  EXPECT_EQ(partial.preprocess->color, ColorMode::kRGB);
}

TEST(MetadataJson, MalformedJsonIsALoadErrorNamingTheSource) {
  EXPECT_TRUE(ThrowsWith<LoadError>([] { parse_metadata("{\"labels\": [", "'/models/cut.pt'"); },
                                    {"'/models/cut.pt'", "unreadable tsnative metadata"}));
  EXPECT_TRUE(ThrowsWith<LoadError>([] { parse_metadata("", "'empty.pt'"); },
                                    {"'empty.pt'", "unreadable tsnative metadata"}));
  // Valid JSON with a field of the wrong type.
  EXPECT_TRUE(ThrowsWith<LoadError>([] { parse_metadata(R"({"labels": 5})", "'typed.pt'"); },
                                    {"'typed.pt'", "unreadable tsnative metadata"}));
  EXPECT_TRUE(ThrowsWith<LoadError>(
      [] { parse_metadata(R"({"preprocess": {"crop": "big"}})", "'c.pt'"); },
      {"'c.pt'", "invalid tsnative metadata", R"('crop' must be an integer >= 0, got "big")"}));
  EXPECT_TRUE(ThrowsWith<LoadError>(
      [] { parse_metadata(R"({"input_shape": 5})", "'s.pt'"); },
      {"'s.pt'", "invalid tsnative metadata", "'input_shape' must be a list of sizes, got 5"}));
}

TEST(MetadataJson, NewerFormatVersionIsALoadError) {
  EXPECT_TRUE(ThrowsWith<LoadError>([] { parse_metadata(R"({"version": 2})", "'future.pt'"); },
                                    {"'future.pt'", "format 2", "newer", "(1)"}));
  // The current version and older ones are read.
  EXPECT_NO_THROW(parse_metadata(R"({"version": 1})", "'now.pt'"));
  EXPECT_NO_THROW(parse_metadata(R"({"version": 0})", "'old.pt'"));
}

TEST(MetadataJson, InvalidPreprocessIsALoadError) {
  EXPECT_TRUE(ThrowsWith<LoadError>(
      [] { parse_metadata(R"({"preprocess": {"mean": [0.5], "std": [0]}})", "'zero.pt'"); },
      {"'zero.pt'", "invalid tsnative metadata", "std values must be finite and non-zero"}));
  EXPECT_TRUE(ThrowsWith<LoadError>(
      [] { parse_metadata(R"({"preprocess": {"resize": 32, "crop": 64}})", "'crop.pt'"); },
      {"'crop.pt'", "invalid tsnative metadata", "crop 64 is larger than resize 32"}));
  EXPECT_TRUE(ThrowsWith<LoadError>(
      [] { parse_metadata(R"({"preprocess": {"color": "sepia"}})", "'color.pt'"); },
      {"'color.pt'", "invalid tsnative metadata", "unknown colour mode 'sepia'"}));
}

// Found by fuzzing (tests/fuzz/regressions/metadata): nlohmann casts a JSON float to an
// integer field, undefined behaviour for 1e82. Integer fields take JSON integers that fit.
TEST(MetadataJson, IntegerFieldsRefuseFloatsHugeAndNegativeValues) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"input_shape": [1, 3, 1e82, 8]})", "'input_shape' must be an integer >= 0, got 1e+82"},
      {R"({"input_shape": [1, 18446744073709551615]})", "got 18446744073709551615"},
      {R"({"input_shape": [1, -3]})", "'input_shape' must be an integer >= 0, got -3"},
      {R"({"input_shape": [2.5]})", "got 2.5"},
      {R"({"version": 1e300})", "'version' must be an integer >= 0"},
      {R"({"preprocess": {"resize": 1e20}})", "'resize' must be an integer >= 0, got 1e+20"},
      {R"({"preprocess": {"crop": -1}})", "'crop' must be an integer >= 0, got -1"},
      {R"({"preprocess": {"crop": true}})", "'crop' must be an integer >= 0, got true"},
  };
  for (const auto& [json, expected] : cases) {
    const std::string& text = json;  // clang 14 lambdas cannot capture structured bindings
    EXPECT_TRUE(ThrowsWith<LoadError>([&] { parse_metadata(text, "'fuzz.pt'"); },
                                      {"'fuzz.pt' has invalid tsnative metadata", expected}))
        << json;
  }
  EXPECT_EQ(
      parse_metadata(R"({"input_shape": [1, 3, 0, 9223372036854775807]})", "'big.pt'").input_shape,
      (std::vector<int64_t>{1, 3, 0, INT64_MAX}));
}

// --- Label files --------------------------------------------------------------------------

class MetadataLabelsTest : public tsnative_test::TempDirTest {
 protected:
  std::string labels_file(const std::string& text) {
    const std::string path = tmp_.file("labels.txt");
    write_text(path, text);
    return path;
  }
};

TEST_F(MetadataLabelsTest, OneLabelPerLine) {
  EXPECT_EQ(read_labels(labels_file("cat\ndog\ntiger, Panthera tigris")),
            (Labels{"cat", "dog", "tiger, Panthera tigris"}));
}

TEST_F(MetadataLabelsTest, CrlfAndTrailingBlankLinesAreDropped) {
  EXPECT_EQ(read_labels(labels_file("cat\r\ndog\r\n\r\n\n")), (Labels{"cat", "dog"}));
}

TEST_F(MetadataLabelsTest, BlankLinesInsideKeepTheIndices) {
  // Label i is line i: an empty line in the middle is an (unnamed) class, not skipped.
  EXPECT_EQ(read_labels(labels_file("a\n\nc\n")), (Labels{"a", "", "c"}));
}

TEST_F(MetadataLabelsTest, EmptyFileIsAnInputError) {
  for (const std::string text : {"", "\n\n", "\r\n"}) {
    const std::string path = labels_file(text);
    EXPECT_TRUE(
        ThrowsWith<InputError>([&] { read_labels(path); }, {"labels file '" + path + "' is empty"}))
        << "text: \"" << text << "\"";
  }
}

TEST_F(MetadataLabelsTest, MissingFileIsAnInputError) {
  const std::string path = tmp_.file("nope.txt");
  EXPECT_TRUE(ThrowsWith<InputError>([&] { read_labels(path); },
                                     {"cannot read labels file '" + path + "'", "no such file"}));
  EXPECT_TRUE(ThrowsWith<InputError>([&] { tsnative::resolve_labels(path); }, {path}));
}

TEST_F(MetadataLabelsTest, ResolveLabelsReadsAFileOrTheBuiltInList) {
  EXPECT_EQ(tsnative::resolve_labels(labels_file("x\ny\n")), (Labels{"x", "y"}));
  EXPECT_EQ(tsnative::resolve_labels("imagenet"), tsnative::imagenet_labels());
}

TEST(MetadataImagenetLabels, AreTheThousandTorchvisionNames) {
  const auto& labels = tsnative::imagenet_labels();
  ASSERT_EQ(labels.size(), 1000u);
  EXPECT_EQ(labels[0], "tench");
  EXPECT_EQ(labels[281], "tabby");
  EXPECT_EQ(labels[292], "tiger");
  EXPECT_EQ(labels[999], "toilet tissue");
  for (size_t i = 0; i < labels.size(); ++i) {
    EXPECT_FALSE(labels[i].empty()) << "label " << i;
    EXPECT_EQ(labels[i].find('\r'), std::string::npos) << "label " << i;
  }
}

// --- Metadata inside a TorchScript archive ------------------------------------------------

class ModelMetadataTest : public tsnative_test::TempDirTest {
 protected:
  // make_linear_module() saved with `json` as extra/tsnative.json, as tsnative.export does.
  std::string save_with(const std::string& json) {
    const std::string path = tmp_.file("with_metadata.pt");
    make_linear_module().save(path, {{tsnative::kMetadataFile, json}});
    return path;
  }
};

TEST_F(ModelMetadataTest, IsReadOnLoad) {
  // Hand-written JSON, independent of to_json.
  const auto model = Model::load(save_with(R"({
    "format": "tsnative-metadata", "version": 1, "tsnative_version": "0.1.0",
    "export_method": "script", "labels": ["zero", "one"], "input_shape": [4, 2],
    "preprocess": {"resize": 20, "crop": 16, "mean": [0.1, 0.2, 0.3], "std": [1, 2, 3],
                   "color": "rgb"}})"));
  const auto& metadata = model->metadata();
  EXPECT_EQ(metadata.labels, (Labels{"zero", "one"}));
  EXPECT_EQ(metadata.input_shape, (std::vector<int64_t>{4, 2}));
  EXPECT_EQ(metadata.tsnative_version, "0.1.0");
  EXPECT_EQ(metadata.export_method, "script");
  ASSERT_TRUE(metadata.preprocess.has_value());
  Preprocess expected;
  expected.resize = 20;
  expected.crop = 16;
  expected.mean = {0.1, 0.2, 0.3};
  expected.std = {1, 2, 3};
  expect_preprocess_eq(*metadata.preprocess, expected);
  // The model itself is unaffected: forward(x) = x @ [[1, 2], [3, 4]] + 1.
  const auto y = model->forward({torch::ones({1, 2})}).toTensor();
  EXPECT_TRUE(torch::equal(y, torch::tensor({{5.0f, 7.0f}})));
}

TEST_F(ModelMetadataTest, ToJsonOutputIsReadOnLoad) {
  Metadata metadata = full_metadata();
  metadata.input_shape = {3, 2};  // what forward takes: load may run it on an input this shape
  const auto model = Model::load(save_with(to_json(metadata)));
  EXPECT_EQ(model->metadata().labels, full_metadata().labels);
  ASSERT_TRUE(model->metadata().preprocess.has_value());
  expect_preprocess_eq(*model->metadata().preprocess, *full_metadata().preprocess);
}

TEST_F(ModelMetadataTest, ModelWithoutMetadataHasEmptyMetadata) {
  const std::string path = tmp_.file("plain.pt");
  make_linear_module().save(path);
  const auto model = Model::load(path);  // metadata() is the model's: keep it alive
  const auto& metadata = model->metadata();
  EXPECT_TRUE(metadata.labels.empty());
  EXPECT_FALSE(metadata.preprocess.has_value());
  EXPECT_TRUE(metadata.input_shape.empty());
  EXPECT_EQ(metadata.export_method, "");
}

TEST_F(ModelMetadataTest, OtherExtraFilesAreIgnored) {
  const std::string path = tmp_.file("other.pt");
  make_linear_module().save(path, {{"notes.txt", "not tsnative's"}});
  EXPECT_TRUE(Model::load(path)->metadata().labels.empty());
}

TEST_F(ModelMetadataTest, BadMetadataIsALoadErrorNamingTheFile) {
  const std::string broken = save_with("{not json");
  EXPECT_TRUE(ThrowsWith<LoadError>([&] { Model::load(broken); },
                                    {"'" + broken + "'", "unreadable tsnative metadata"}));
  const std::string future = save_with(R"({"version": 7})");
  EXPECT_TRUE(
      ThrowsWith<LoadError>([&] { Model::load(future); }, {"'" + future + "'", "format 7"}));
}

}  // namespace
