// platform_problem: whether a package's compiled code can run here, with the CPU's answers
// given by the test, so that every refusal is exercised on every CPU (an AMX Xeon has every
// ISA a real package could name).
#include <set>
#include <string>
#include <unordered_map>

#include <gtest/gtest.h>

#include "core/backends/aoti.h"

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

}  // namespace
