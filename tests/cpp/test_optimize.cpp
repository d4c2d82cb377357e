// Optimize levels in the core: parsing, the candidate variants, and Model::load choosing and
// reporting one. Outputs are compared with the module run as saved.
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>
#include <torch/csrc/jit/runtime/graph_executor.h>
#include <torch/script.h>

#include "core/backends/torchscript/backend.h"
#include "core/backends/torchscript/variants.h"
#include "core/errors.h"
#include "core/model.h"
#include "core/runtime.h"
#include "test_support.h"

namespace tsnative_test {
namespace {

using tsnative::OptimizeLevel;
using tsnative::VariantContext;

// The CPU flags the kernel reports (the first processor's "flags" line of /proc/cpuinfo): an
// independent reference for what LibTorch's cpuinfo detects.
std::set<std::string> kernel_cpu_flags() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("flags", 0) != 0) continue;
    std::istringstream words(line.substr(line.find(':') + 1));
    return {std::istream_iterator<std::string>(words), std::istream_iterator<std::string>()};
  }
  return {};
}

class OptimizeTest : public TempDirTest {};

// The x @ w + 1 module of test_support.h, saved.
std::string save_linear(const TempDir& dir) {
  return save_module(make_linear_module(), dir.file("linear.pt"));
}

TEST(OptimizeLevelTest, ParsesTheFourLevelsAndRefusesOthers) {
  EXPECT_EQ(tsnative::parse_optimize_level("none"), OptimizeLevel::kNone);
  EXPECT_EQ(tsnative::parse_optimize_level("exact"), OptimizeLevel::kExact);
  EXPECT_EQ(tsnative::parse_optimize_level("fast"), OptimizeLevel::kFast);
  EXPECT_EQ(tsnative::parse_optimize_level("bf16"), OptimizeLevel::kBf16);
  EXPECT_STREQ(tsnative::optimize_level_name(OptimizeLevel::kFast), "fast");
  EXPECT_STREQ(tsnative::optimize_level_name(OptimizeLevel::kBf16), "bf16");
  EXPECT_TRUE(ThrowsWith<tsnative::OptionError>(
      [] { tsnative::parse_optimize_level("Exact"); },
      {"unknown optimize level 'Exact'", "'none', 'exact', 'fast' or 'bf16'"}));
}

#if defined(__linux__) && (defined(__x86_64__) || defined(__i386__))
// The choice among timed variants: the fastest, unless a simpler one (later) is within 5%.
TEST(PickWithinNoiseTest, TheFastestUnlessASimplerOneIsWithinNoise) {
  using tsnative::pick_within_noise;
  EXPECT_EQ(pick_within_noise({0.18, 0.39, 0.45}), 0u);  // a real gap: the fastest
  EXPECT_EQ(pick_within_noise({0.39, 0.18, 0.45}), 1u);
  // The issue's stalled machine: fast 47.91 ms, none 48.06 ms: noise, so the saved module.
  EXPECT_EQ(pick_within_noise({47.91, 60.0, 48.06}), 2u);
  EXPECT_EQ(pick_within_noise({10.0, 10.4, 10.6}), 1u);  // 10.6 is 6% off: not within noise
  EXPECT_EQ(pick_within_noise({10.0, 10.0}), 1u);        // a tie goes to the simpler
  EXPECT_EQ(pick_within_noise({5.0}), 0u);
  EXPECT_EQ(pick_within_noise({10.0, 10.4}, 0.0), 0u);
}

TEST(CpuCapabilityTest, NativeBf16IsWhatTheKernelReports) {
  const auto flags = kernel_cpu_flags();
  ASSERT_FALSE(flags.empty()) << "no flags line in /proc/cpuinfo";
  const bool expected = flags.count("avx512_bf16") > 0 || flags.count("amx_bf16") > 0;
  EXPECT_EQ(tsnative::cpu_has_native_bf16(), expected);
}
#endif

TEST_F(OptimizeTest, NoneRunsTheModuleAsSaved) {
  auto module = torch::jit::load(save_linear(tmp_));
  module.eval();
  std::vector<std::string> notes;
  const auto variants = tsnative::candidate_variants(module, OptimizeLevel::kNone,
                                                     {c10::kCPU, true, /*warmed_up_in_scope=*/true},
                                                     {"forward"}, notes);
  ASSERT_EQ(variants.size(), 1u);
  EXPECT_EQ(variants[0].name, "none (as saved)");
  EXPECT_TRUE(notes.empty());
}

TEST_F(OptimizeTest, ExactOffersAFrozenVariantThatComputesTheSame) {
  auto module = torch::jit::load(save_linear(tmp_));
  module.eval();
  std::vector<std::string> notes;
  auto variants = tsnative::candidate_variants(module, OptimizeLevel::kExact, VariantContext{},
                                               {"add_one", "forward", "scale"}, notes);
  ASSERT_EQ(variants.size(), 2u);  // no oneDNN Graph variant: nothing would warm it up fused
  EXPECT_EQ(variants.back().name, "none (as saved)");
  const auto x = torch::tensor({{1.0f, 1.0f}});
  c10::NoGradGuard no_grad;
  // [1, 1] @ [[1, 2], [3, 4]] + 1 = [5, 7], by hand.
  EXPECT_TRUE(
      torch::equal(variants[0].module.forward({x}).toTensor(), torch::tensor({{5.0f, 7.0f}})));
  // Methods other than forward survive freezing.
  EXPECT_EQ(variants[0].module.get_method("add_one")({41}).toInt(), 42);
}

// Both branches of fast run on every CPU: the capability is the context's, not this machine's.
TEST_F(OptimizeTest, FastWithoutNativeBfloat16IsExactAndSaysSo) {
  auto module = torch::jit::load(save_linear(tmp_));
  module.eval();
  std::vector<std::string> notes;
  const auto variants = tsnative::candidate_variants(module, OptimizeLevel::kFast,
                                                     {c10::kCPU, false, true}, {"forward"}, notes);
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_NE(notes[0].find("no native bfloat16"), std::string::npos) << notes[0];
  ASSERT_EQ(variants.size(), 3u);  // exact: oneDNN Graph, optimized for inference; none
  for (const auto& variant : variants) EXPECT_EQ(variant.input_dtype, c10::ScalarType::Float);
}

TEST_F(OptimizeTest, FastWithNativeBfloat16OffersBfloat16FirstThenExact) {
  auto module = torch::jit::load(save_linear(tmp_));
  module.eval();
  std::vector<std::string> notes;
  const auto variants =
      tsnative::candidate_variants(module, OptimizeLevel::kFast, {c10::kCPU, true, false},
                                   {"add_one", "forward", "scale"}, notes);
  EXPECT_TRUE(notes.empty());
  ASSERT_EQ(variants.size(), 3u);  // bfloat16 and float32 optimized for inference; none
  EXPECT_EQ(variants[0].input_dtype, c10::ScalarType::BFloat16);
  EXPECT_EQ(variants[0].name, "fast (bfloat16, frozen, optimized for inference)");
  EXPECT_EQ(variants[1].input_dtype, c10::ScalarType::Float);
  EXPECT_EQ(variants[2].name, "none (as saved)");
}

TEST_F(OptimizeTest, Bf16RunsBfloat16OnAnyCpuWithNoFloat32Rival) {
  auto module = torch::jit::load(save_linear(tmp_));
  module.eval();
  std::vector<std::string> notes;
  auto variants = tsnative::candidate_variants(module, OptimizeLevel::kBf16,
                                               {c10::kCPU, /*cpu_native_bf16=*/false, true},
                                               {"forward"}, notes);
  EXPECT_TRUE(notes.empty());
  // oneDNN Graph and optimized for inference, both bfloat16; the saved module only as fallback.
  ASSERT_EQ(variants.size(), 3u);
  EXPECT_EQ(variants.back().name, "none (as saved)");
  EXPECT_TRUE(variants.back().fallback_only);
  variants.pop_back();
  c10::NoGradGuard no_grad;
  const auto x = torch::tensor({{1.0f, 1.0f}}).to(c10::ScalarType::BFloat16);
  for (auto& variant : variants) {
    EXPECT_FALSE(variant.fallback_only);
    EXPECT_EQ(variant.input_dtype, c10::ScalarType::BFloat16) << variant.name;
    EXPECT_EQ(variant.name.rfind("bf16 (bfloat16, frozen, ", 0), 0u) << variant.name;
    // [1, 1] @ [[1, 2], [3, 4]] + 1 = [5, 7], by hand: small integers are exact in bfloat16.
    const auto y = variant.module.forward({x}).toTensor();
    EXPECT_EQ(y.scalar_type(), c10::ScalarType::BFloat16);
    EXPECT_TRUE(torch::equal(y.to(c10::ScalarType::Float), torch::tensor({{5.0f, 7.0f}})));
  }
}

// relu(conv2d(x)) then a linear layer: ops oneDNN Graph fuses.
torch::jit::Module make_conv_module() {
  torch::manual_seed(0);
  auto module = new_module("Conv");
  module.register_parameter("weight", torch::randn({4, 3, 3, 3}), false);
  module.register_parameter("bias", torch::randn({4}), false);
  module.register_parameter("fc", torch::randn({2, 4 * 8 * 8}), false);
  define(module, R"JIT(
def forward(self, x: Tensor) -> Tensor:
    y = torch.relu(torch.conv2d(x, self.weight, self.bias, 1, 1))
    return torch.linear(torch.flatten(y, 1), self.fc)
)JIT");
  module.eval();
  return module;
}

// The graph the profiling executor ran for the last forward call in this thread.
std::string optimized_graph_after_warmup(torch::jit::Module& module, const at::Tensor& x) {
  c10::NoGradGuard no_grad;
  for (int i = 0; i < 3; ++i) module.forward({x});
  return torch::jit::lastExecutedOptimizedGraph()->toString();
}

TEST_F(OptimizeTest, OnednnGraphVariantIsFusedOnlyInsideTheScopeAndComputesTheSame) {
  auto module = make_conv_module();
  std::vector<std::string> notes;
  auto variants = tsnative::candidate_variants(module, OptimizeLevel::kExact,
                                               {c10::kCPU, false, /*warmed_up_in_scope=*/true},
                                               {"forward"}, notes);
  ASSERT_EQ(variants.size(), 3u);
  ASSERT_TRUE(variants[0].onednn_graph);
  EXPECT_NE(variants[0].name.find("oneDNN Graph fusion"), std::string::npos) << variants[0].name;
  // Its graph is its own: not rewritten to MKLDNN ops by the next variant's passes.
  const auto graph = variants[0].module.get_method("forward").graph()->toString();
  EXPECT_EQ(graph.find("mkldnn"), std::string::npos) << graph;
  EXPECT_NE(variants[1].module.get_method("forward").graph()->toString().find("mkldnn"),
            std::string::npos);
  const auto x = torch::randn({2, 3, 8, 8});

  std::string fused;
  std::string unfused_elsewhere;
  {
    tsnative::OnednnGraphFusionScope scope;
    // Another thread, while the scope is held here, optimizes its own copy without fusion.
    auto other = variants[0].module.clone();
    std::thread([&] { unfused_elsewhere = optimized_graph_after_warmup(other, x); }).join();
    fused = optimized_graph_after_warmup(variants[0].module, x);
  }
  auto after = variants[0].module.clone();
  const auto unfused_after = optimized_graph_after_warmup(after, x);
  EXPECT_NE(fused.find("oneDNNFusionGroup"), std::string::npos) << fused;
  EXPECT_EQ(unfused_elsewhere.find("oneDNNFusionGroup"), std::string::npos) << unfused_elsewhere;
  EXPECT_EQ(unfused_after.find("oneDNNFusionGroup"), std::string::npos) << unfused_after;

  c10::NoGradGuard no_grad;
  const auto expected = module.forward({x}).toTensor();
  for (auto& variant : variants) {
    const auto actual = variant.module.forward({x}).toTensor();
    EXPECT_TRUE(torch::allclose(actual, expected, 1e-5, 1e-5))
        << variant.name << ": max |diff| " << (actual - expected).abs().max().item<float>();
  }
}

// The profiling executor optimizes again for each new input shape: a oneDNN Graph variant's
// calls run in a fusion scope, so those graphs are fused too (a batch other than the warm-up's
// ran 3x slower unfused). warmup_runs = 0 keeps the first variant, untimed, never warmed up.
TEST_F(OptimizeTest, AOnednnGraphVariantIsFusedForEveryInputShape) {
  tsnative::LoadOptions options;
  options.optimize = OptimizeLevel::kExact;
  options.warmup_runs = 0;
  const auto path = save_module(make_conv_module(), tmp_.file("conv.pt"));
  const auto model = tsnative::Model::load(path, options);
  ASSERT_EQ(model->optimization().rfind("exact (float32, frozen, oneDNN Graph fusion)", 0), 0u)
      << model->optimization();
  auto reference = torch::jit::load(path);
  c10::NoGradGuard no_grad;
  for (const int64_t batch : {2, 5}) {
    const auto x = torch::randn({batch, 3, 8, 8});
    for (int i = 0; i < 3; ++i) model->forward({x});
    const auto graph = torch::jit::lastExecutedOptimizedGraph()->toString();
    EXPECT_NE(graph.find("oneDNNFusionGroup"), std::string::npos) << "batch " << batch << graph;
    const auto expected = reference.forward({x}).toTensor();
    EXPECT_TRUE(torch::allclose(model->forward({x}).toTensor(), expected, 1e-5, 1e-5));
  }
}

TEST_F(OptimizeTest, LoadTimesTheVariantsOnTheWarmupInputAndReportsIt) {
  tsnative::LoadOptions options;
  options.optimize = OptimizeLevel::kExact;
  options.warmup_inputs = {torch::rand({3, 2})};
  const auto model = tsnative::Model::load(save_linear(tmp_), options);
  const auto& report = model->optimization();
  EXPECT_NE(report.find("timed on the warm-up input"), std::string::npos) << report;
  EXPECT_NE(report.find("none (as saved)"), std::string::npos) << report;
  const auto x = torch::tensor({{1.0f, 1.0f}});
  EXPECT_TRUE(torch::equal(model->forward({x}).toTensor(), torch::tensor({{5.0f, 7.0f}})));
}

// Without warm-up inputs the first call of forward chooses; calls racing to be first wait for
// that one choice, and every call returns the model's answer.
TEST_F(OptimizeTest, WithoutWarmupInputsTheFirstCallChoosesOnceForAllThreads) {
  tsnative::LoadOptions options;
  options.optimize = OptimizeLevel::kExact;
  const auto model = tsnative::Model::load(save_linear(tmp_), options);
  const std::string pending = model->optimization();
  EXPECT_EQ(pending.rfind("exact: the first call of forward times exact (float32, frozen, ", 0), 0u)
      << pending;
  const auto x = torch::tensor({{1.0f, 1.0f}});
  std::vector<at::Tensor> outputs(4);
  std::vector<std::thread> threads;
  for (auto& output : outputs) {
    threads.emplace_back([&model, &x, &output] { output = model->forward({x}).toTensor(); });
  }
  for (auto& thread : threads) thread.join();
  for (const auto& output : outputs) {
    EXPECT_TRUE(torch::equal(output, torch::tensor({{5.0f, 7.0f}})));
  }
  const std::string chosen = model->optimization();
  EXPECT_EQ(chosen.rfind("exact (float32, frozen, ", 0) == 0 || chosen.rfind("none", 0) == 0, true)
      << chosen;
  const auto timed = chosen.find("[timed on the first call: ");
  ASSERT_NE(timed, std::string::npos) << chosen;
  EXPECT_EQ(chosen.find("[timed on", timed + 1), std::string::npos) << "chosen twice: " << chosen;
  EXPECT_NE(chosen.find("s to choose)"), std::string::npos) << chosen;
}

// A first call no variant can run fails as it would unoptimized, and leaves the choice to the
// next call.
TEST_F(OptimizeTest, AFirstCallThatFailsLeavesTheChoiceToTheNext) {
  tsnative::LoadOptions options;
  options.optimize = OptimizeLevel::kExact;
  const auto model = tsnative::Model::load(save_linear(tmp_), options);
  const auto as_saved = tsnative::Model::load(save_linear(tmp_));
  const auto wrong = torch::ones({2, 5});
  std::string expected;
  try {
    as_saved->forward({wrong});
  } catch (const tsnative::InferenceError& e) {
    expected = e.what();
  }
  ASSERT_FALSE(expected.empty());
  EXPECT_TRUE(ThrowsWith<tsnative::InferenceError>([&] { model->forward({wrong}); }, {expected}));
  EXPECT_NE(model->optimization().find("the first call of forward times"), std::string::npos)
      << model->optimization();
  EXPECT_TRUE(torch::equal(model->forward({torch::tensor({{1.0f, 1.0f}})}).toTensor(),
                           torch::tensor({{5.0f, 7.0f}})));
  EXPECT_NE(model->optimization().find("[timed on the first call: "), std::string::npos)
      << model->optimization();
}

TEST_F(OptimizeTest, LoadWithBf16ComputesInBfloat16AndHandsBackFloat32) {
  tsnative::LoadOptions options;
  options.optimize = OptimizeLevel::kBf16;
  options.warmup_inputs = {torch::rand({3, 2})};
  const auto model = tsnative::Model::load(save_linear(tmp_), options);
  EXPECT_EQ(model->optimization().rfind("bf16 (bfloat16, frozen, ", 0), 0u)
      << model->optimization();
  // 0.1 is not a bfloat16: the result shows the input was rounded to 8 bits of mantissa.
  const auto y = model->forward({torch::tensor({{0.1f, 0.0f}})}).toTensor();
  EXPECT_EQ(y.scalar_type(), c10::ScalarType::Float);
  const auto bf16_of_tenth = static_cast<float>(c10::BFloat16(0.1f));
  EXPECT_NE(bf16_of_tenth, 0.1f);
  EXPECT_FLOAT_EQ(y[0][0].item<float>(), static_cast<float>(c10::BFloat16(bf16_of_tenth + 1)));
}

TEST_F(OptimizeTest, AWarmupInputTheModelRejectsIsAnInferenceError) {
  tsnative::LoadOptions options;
  options.optimize = OptimizeLevel::kExact;
  options.warmup_inputs = {torch::rand({3, 5})};  // 3x5 @ 2x2 cannot be multiplied
  EXPECT_TRUE(ThrowsWith<tsnative::InferenceError>(
      [&] { tsnative::Model::load(save_linear(tmp_), options); },
      {"warming up", "cannot be multiplied"}));
}

}  // namespace
}  // namespace tsnative_test
