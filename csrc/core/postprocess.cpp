#include "core/postprocess.h"

#include <algorithm>

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include "core/errors.h"

namespace tsnative {

TopK softmax_topk(const at::Tensor& logits, std::optional<int64_t> k) {
  if (k && *k < 1) {
    throw OptionError("top-k needs k >= 1, got " + std::to_string(*k));
  }
  if (logits.dim() < 1 || !at::isFloatingType(logits.scalar_type())) {
    throw InferenceError("top-k needs a floating-point output of at least one dimension, got " +
                         std::string(c10::toString(logits.scalar_type())) + " of shape " +
                         c10::str(logits.sizes()));
  }
  const int64_t classes = logits.size(-1);
  if (k && *k > classes) {
    throw OptionError("top-k of " + std::to_string(*k) + " classes, but the output has " +
                      std::to_string(classes) + " (its last dimension, of shape " +
                      c10::str(logits.sizes()) + "): ask for at most " + std::to_string(classes));
  }
  c10::NoGradGuard no_grad;
  const auto probabilities = at::softmax(logits, -1);
  auto [values, indices] = probabilities.topk(k.value_or(std::min(kDefaultTopK, classes)), -1);
  return TopK{std::move(values), std::move(indices), logits.size(-1)};
}

bool is_class_scores(const c10::IValue& output) {
  if (!output.isTensor()) return false;
  const auto& scores = output.toTensor();
  return scores.dim() >= 1 && at::isFloatingType(scores.scalar_type()) && scores.size(-1) >= 2;
}

TopK softmax_topk(const c10::IValue& output, std::optional<int64_t> k) {
  if (!output.isTensor()) {
    throw InferenceError("top-k needs the model to return a tensor, but it returned " +
                         output.type()->annotation_str());
  }
  return softmax_topk(output.toTensor(), k);
}

}  // namespace tsnative
