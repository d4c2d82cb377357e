// What a package's files say, read before its code loads: platform_problem (whether its
// compiled code can run here, with the CPU's answers given by the test, so that every refusal is
// exercised on every CPU: an AMX Xeon has every ISA a real package could name), and the inputs
// tsnative.export described (parse_inputs, check_inputs).
#include <set>
#include <string>
#include <unordered_map>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "core/backends/aoti/package.h"
#include "core/errors.h"

namespace {

using tsnative::platform_problem;

// A CPU with exactly these capabilities.
auto cpu_with(std::set<std::string> capabilities) {
  return
      [capabilities](const std::string& capability) { return capabilities.count(capability) > 0; };
}

const std::set<std::string> kAvx512{"avx2",      "fma3",      "avx512_f",
                                    "avx512_dq", "avx512_vl", "avx512_bw"};

TEST(AotiPlatformTest, EachIsaWordNeedsItsCapabilities) {
  const std::unordered_map<std::string, std::string> metadata{
      {"AOTI_CPU_ISA", "AVX512 AVX512_VNNI AMX_TILE"}};
  auto with_vnni = kAvx512;
  with_vnni.insert("avx512_vnni");
  EXPECT_EQ(platform_problem(metadata, c10::Device("cpu"), cpu_with(kAvx512)),
            "it was compiled for CPUs with AVX512_VNNI and this CPU lacks avx512_vnni (export it "
            "again on this machine, or on one with the same instruction set)");
  const auto amx = platform_problem(metadata, c10::Device("cpu"), cpu_with(with_vnni));
  EXPECT_EQ(amx.rfind("it was compiled for CPUs with AMX_TILE and this CPU lacks amx_tile", 0), 0u)
      << amx;
  auto everything = with_vnni;
  everything.insert({"amx_tile", "amx_bf16", "amx_int8"});
  EXPECT_EQ(platform_problem(metadata, c10::Device("cpu"), cpu_with(everything)), "");
}

TEST(AotiPlatformTest, AnAvx2CpuRefusesAnAvx512Package) {
  const std::unordered_map<std::string, std::string> metadata{{"AOTI_CPU_ISA", "AVX512"}};
  const auto problem = platform_problem(metadata, c10::Device("cpu"), cpu_with({"avx2", "fma3"}));
  EXPECT_EQ(problem.rfind("it was compiled for CPUs with AVX512 and this CPU lacks avx512_f", 0),
            0u)
      << problem;
}

TEST(AotiPlatformTest, UnknownIsaWordsAreLeftToTheLoaderAndFlagsAreChecked) {
  // A word this core does not know (a newer Inductor's) is not a reason to refuse; a flag is.
  EXPECT_EQ(platform_problem({{"AOTI_CPU_ISA", "AVX1024"}}, c10::Device("cpu"), cpu_with({})), "");
  EXPECT_EQ(platform_problem({{"tsnative.cpu_flags", "avx512_bf16"}}, c10::Device("cpu"),
                             cpu_with(kAvx512)),
            "it was compiled for CPUs with avx512_bf16 and this CPU lacks it (export it again "
            "on this machine, or on one with the same instruction set)");
}

TEST(AotiPlatformTest, ADevicePackageIsRefusedElsewhere) {
  const auto problem =
      platform_problem({{"AOTI_DEVICE_KEY", "cuda"}}, c10::Device("cpu"), cpu_with({}));
  EXPECT_EQ(problem.rfind("it was compiled for cuda, not cpu", 0), 0u) << problem;
  EXPECT_NE(problem.find("--device cuda"), std::string::npos) << problem;
}

TEST(AotiPlatformTest, Int8NamesTheFastestInt8InstructionsOfEachCpuKind) {
  // Every branch on every CPU: the AVX2-only EPYC, the AVX512-VNNI one, an AMX Xeon.
  using tsnative::int8_instructions;
  auto vnni = kAvx512;
  vnni.insert("avx512_vnni");
  auto amx = vnni;
  amx.insert({"amx_tile", "amx_int8"});
  EXPECT_EQ(int8_instructions(cpu_with(amx)), "AMX-INT8 tiles");
  EXPECT_EQ(int8_instructions(cpu_with(vnni)), "AVX512-VNNI");
  EXPECT_EQ(int8_instructions(cpu_with({"avx2", "avx_vnni"})), "AVX-VNNI");
  EXPECT_EQ(int8_instructions(cpu_with({"avx2", "fma3"})),
            "no VNNI or AMX, AVX2's int8 arithmetic (slower than on a CPU with either)");
}

TEST(AotiInputsTest, ParsesStaticAndDynamicDimensions) {
  const auto inputs = tsnative::parse_inputs(
      R"([{"name": "x", "dtype": "float32",
           "shape": [{"name": "batch", "min": 1, "max": null}, 3, 4]},
          {"name": "ids", "dtype": "int64", "shape": [{"name": "n", "min": 2, "max": 8}]}])");
  ASSERT_EQ(inputs.size(), 2u);
  EXPECT_EQ(inputs[0].name, "x");
  EXPECT_EQ(inputs[0].dtype, c10::ScalarType::Float);
  ASSERT_EQ(inputs[0].shape.size(), 3u);
  EXPECT_EQ(inputs[0].shape[0].size, -1);
  EXPECT_EQ(inputs[0].shape[0].name, "batch");
  EXPECT_EQ(inputs[0].shape[0].max, -1);
  EXPECT_EQ(inputs[0].shape[2].size, 4);
  EXPECT_EQ(inputs[1].dtype, c10::ScalarType::Long);
  EXPECT_EQ(inputs[1].shape[0].min, 2);
  EXPECT_EQ(inputs[1].shape[0].max, 8);
}

TEST(AotiInputsTest, RefusesWhatDescribesNoTensor) {
  for (
      const char* json : {
          R"([{"name": "x", "dtype": "float33", "shape": [1]}])",   // no such dtype
          R"([{"name": "x", "dtype": "float32", "shape": [-2]}])",  // negative size
          R"([{"name": "x", "dtype": "float32", "shape": [{"name": "b", "min": 5, "max": 2}]}])",
          R"([{"name": "x", "dtype": "float32", "shape": [{"name": "b", "min": -1, "max": null}]}])",
          R"([{"name": "x", "shape": [1]}])",                  // no dtype
          R"({"name": "x"})",                                  // not a list of inputs
          R"([{"name": "x", "dtype": "float32", "shape": [)",  // not JSON
      }) {
    EXPECT_THROW(tsnative::parse_inputs(json), std::exception) << json;
  }
}

TEST(AotiInputsTest, ChecksDtypeRankAndEachDimension) {
  const auto specs = tsnative::parse_inputs(
      R"([{"name": "x", "dtype": "float32", "shape": [{"name": "batch", "min": 1, "max": 4}, 3]}])");
  EXPECT_NO_THROW(tsnative::check_inputs(specs, {at::zeros({4, 3})}));
  const auto message = [&specs](const at::Tensor& tensor) {
    try {
      tsnative::check_inputs(specs, {tensor});
    } catch (const tsnative::ArgumentError& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_NE(message(at::zeros({5, 3})).find("dimension 0 (batch was exported for 1 to 4)"),
            std::string::npos)
      << message(at::zeros({5, 3}));
  EXPECT_NE(message(at::zeros({2, 4})).find("dimension 1 (exported as 3)"), std::string::npos);
  EXPECT_NE(message(at::zeros({2, 3}, at::kDouble)).find("its dtype"), std::string::npos);
  EXPECT_NE(message(at::zeros({3})).find("its number of dimensions"), std::string::npos);
  EXPECT_EQ(message(at::zeros({5, 3}))
                .rfind("forward() argument 'x' was exported as "
                       "float32[batch, 3] and got float32[5, 3]: ",
                       0),
            0u)
      << message(at::zeros({5, 3}));
}

TEST(AotiInputsTest, AStaticModelAdmitsExactlyItsShapes) {
  // The choice between a package's static-batch models and its dynamic one.
  const auto specs = tsnative::parse_inputs(
      R"([{"name": "x", "dtype": "float32", "shape": [1, 3]},
          {"name": "y", "dtype": "int64", "shape": [1]}])");
  const auto ids = at::zeros({1}, at::kLong);
  EXPECT_TRUE(tsnative::admits(specs, {at::zeros({1, 3}), ids}));
  EXPECT_FALSE(tsnative::admits(specs, {at::zeros({2, 3}), at::zeros({2}, at::kLong)}));
  EXPECT_FALSE(tsnative::admits(specs, {at::zeros({1, 3}), at::zeros({1})}));  // y's dtype
  EXPECT_FALSE(tsnative::admits(specs, {at::zeros({1, 3})}));                  // one input short
  EXPECT_EQ(tsnative::static_model_name(8), "batch_8");
}

}  // namespace
