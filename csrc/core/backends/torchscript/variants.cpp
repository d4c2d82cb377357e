#include "core/backends/torchscript/variants.h"

#include <algorithm>

#include <torch/csrc/jit/api/module.h>
#include <torch/csrc/jit/codegen/onednn/interface.h>
#include <torch/csrc/jit/ir/constants.h>
#include <torch/csrc/jit/passes/pass_manager.h>
#include <torch/csrc/jit/runtime/graph_iterator.h>

#include "core/errors.h"
#include "core/runtime.h"

namespace tsnative {
namespace {

using torch::jit::Graph;

thread_local bool fusing_in_this_thread = false;

// Methods other than forward survive freezing only when named as preserved.
std::vector<std::string> preserved_methods(const std::vector<std::string>& methods) {
  std::vector<std::string> others;
  for (const auto& method : methods) {
    if (method != "forward") others.push_back(method);
  }
  return others;
}

// Factories whose dtype=None means the default dtype, float32 (not "as the input", as for
// zeros_like, nor "from the arguments", as for arange, full and tensor).
bool makes_default_dtype(const torch::jit::Node& node) {
  static const std::vector<c10::Symbol> factories{c10::aten::zeros, c10::aten::ones,
                                                  c10::aten::empty, c10::aten::rand,
                                                  c10::aten::randn, c10::aten::eye};
  return std::find(factories.begin(), factories.end(), node.kind()) != factories.end();
}

// A traced model records the dtypes it saw as constants: `.to(torch.float32)`, `zeros(...,
// dtype=torch.float32)`. In a bfloat16 variant those would make float32 tensors meet bfloat16
// ones ("expected m1 and m2 to have the same dtype"), so there float32 means bfloat16 too, for
// dtype arguments, for the graph's float32 tensor constants, and for factories left to the
// default dtype (silero-vad's `torch.zeros(batch, context)` meeting its bfloat16 input).
void retarget_float32_to_bfloat16(torch::jit::Module& frozen) {
  const auto float32 = static_cast<int64_t>(c10::ScalarType::Float);
  const auto bfloat16 = static_cast<int64_t>(c10::ScalarType::BFloat16);
  for (const auto& method : frozen.get_methods()) {
    auto graph = method.graph();
    torch::jit::DepthFirstGraphNodeIterator nodes(graph);
    for (auto* node = nodes.next(); node != nullptr; node = nodes.next()) {
      if (node->kind() == c10::prim::Constant && node->hasAttribute(c10::attr::value) &&
          node->kindOf(c10::attr::value) == torch::jit::AttributeKind::t) {
        const auto& tensor = node->t(c10::attr::value);
        if (tensor.scalar_type() == c10::ScalarType::Float) {
          node->t_(c10::attr::value, tensor.to(c10::ScalarType::BFloat16));
          node->output()->inferTypeFrom(node->t(c10::attr::value));
        }
        continue;
      }
      const auto* schema = node->maybeSchema();
      if (schema == nullptr) continue;
      for (size_t i = 0; i < schema->arguments().size() && i < node->inputs().size(); ++i) {
        if (schema->arguments()[i].name() != "dtype") continue;
        const auto value = torch::jit::toIValue(node->input(i));
        const bool float32_by_default = value && value->isNone() && makes_default_dtype(*node);
        if (!float32_by_default && (!value || !value->isInt() || value->toInt() != float32)) {
          continue;
        }
        torch::jit::WithInsertPoint here(node);
        node->replaceInput(i, graph->insertConstant(bfloat16));
      }
    }
  }
}

// The variants of one precision: frozen (weights inlined as constants, conv-bn folded), then
// fused by oneDNN Graph or rewritten by PyTorch's inference passes. The two do not mix:
// oneDNN Graph fails on graphs that optimize_for_inference has converted to MKLDNN ops.
std::vector<Variant> frozen_variants(const torch::jit::Module& module, c10::ScalarType dtype,
                                     const std::string& level, bool onednn_graph,
                                     const std::vector<std::string>& methods,
                                     const std::string& only) {
  const auto preserved = preserved_methods(methods);
  const std::string prefix =
      level + (dtype == c10::ScalarType::BFloat16 ? " (bfloat16" : " (float32") + ", frozen, ";
  std::vector<Variant> variants;
  // Each variant freezes its own copy: optimize_for_inference rewrites the graph in place.
  const auto freeze = [&]() {
    auto frozen = torch::jit::freeze(module, preserved);
    if (dtype == c10::ScalarType::BFloat16) retarget_float32_to_bfloat16(frozen);
    return frozen;
  };
  const auto wanted = [&only](const std::string& name) { return only.empty() || only == name; };
  if (const auto name = prefix + "oneDNN Graph fusion)"; onednn_graph && wanted(name)) {
    variants.push_back({freeze(), dtype, name, true});
  }
  if (const auto name = prefix + "optimized for inference)"; wanted(name)) {
    auto frozen = freeze();
    variants.push_back({torch::jit::optimize_for_inference(frozen, preserved), dtype, name});
  }
  return variants;
}

// Casts the floating-point parameters and buffers, as nn.Module.to(dtype) does in Python.
// LibTorch's Module::to(dtype) casts them all, index buffers too (a BERT's position_ids), and
// the model then fails in gather or embedding.
void cast_floating_state(const torch::jit::Module& module, c10::ScalarType dtype) {
  const auto cast = [dtype](const at::Tensor& tensor) {
    if (tensor.is_floating_point()) tensor.set_data(tensor.to(dtype));
  };
  for (const auto& parameter : module.parameters()) cast(parameter);
  for (const auto& buffer : module.buffers()) cast(buffer);
}

void append(std::vector<Variant>& to, std::vector<Variant> more) {
  to.insert(to.end(), std::make_move_iterator(more.begin()), std::make_move_iterator(more.end()));
}

}  // namespace

std::vector<Variant> candidate_variants(const torch::jit::Module& module, OptimizeLevel level,
                                        const VariantContext& context,
                                        const std::vector<std::string>& methods,
                                        std::vector<std::string>& notes) {
  std::vector<Variant> variants;
  const bool onednn_graph = context.warmed_up_in_scope && context.device.is_cpu();
  const std::string name = optimize_level_name(level);
  bool bf16 = level == OptimizeLevel::kBf16 || level == OptimizeLevel::kFast;
  if (level == OptimizeLevel::kFast && context.device.is_cpu() && !context.cpu_native_bf16) {
    notes.push_back(
        "fast: this CPU has no native bfloat16 (AVX512-BF16 or AMX), so fast runs as exact, in "
        "float32 (optimize='bf16' runs bfloat16 anyway, emulated)");
    bf16 = false;
  }
  // With a cached choice, only its precision is built (a name's prefix says which).
  const auto wanted = [&context](const std::string& prefix) {
    return context.only_variant.empty() || context.only_variant.rfind(prefix, 0) == 0;
  };
  if (bf16 && wanted(name + " (bfloat16")) {
    try {
      auto half = module.clone();
      cast_floating_state(half, c10::ScalarType::BFloat16);
      append(variants, frozen_variants(half, c10::ScalarType::BFloat16, name, onednn_graph, methods,
                                       context.only_variant));
    } catch (const std::exception& e) {
      notes.push_back(
          name + ": bfloat16 conversion failed, " +
          (level == OptimizeLevel::kFast ? "using float32: " : "running it as saved: ") +
          first_line(e.what()));
    }
  }
  if ((level == OptimizeLevel::kExact || level == OptimizeLevel::kFast) &&
      wanted("exact (float32")) {
    try {
      append(variants, frozen_variants(module, c10::ScalarType::Float, "exact", onednn_graph,
                                       methods, context.only_variant));
    } catch (const std::exception& e) {
      notes.push_back(std::string("exact: the model cannot be frozen, running it as saved: ") +
                      first_line(e.what()));
    }
  }
  const bool fallback_only = level == OptimizeLevel::kBf16 && !variants.empty();
  variants.push_back(
      {module, c10::ScalarType::Float, "none (as saved)", false, fallback_only, true});
  return variants;
}

OnednnGraphFusionScope::OnednnGraphFusionScope() : outer_(fusing_in_this_thread) {
  // Registered once for the process; it fuses only inside a scope, only in the scope's thread.
  static const auto registered = torch::jit::registerPrePass([](std::shared_ptr<Graph>& graph) {
    if (fusing_in_this_thread) torch::jit::fuser::onednn::fuseGraph(graph);
  });
  (void)registered;
  fusing_in_this_thread = true;
}

OnednnGraphFusionScope::~OnednnGraphFusionScope() { fusing_in_this_thread = outer_; }

}  // namespace tsnative
