// Classification post-processing: softmax over the last dimension, then the k best classes.
#pragma once

#include <cstdint>
#include <optional>

#include <ATen/core/Tensor.h>
#include <ATen/core/ivalue.h>

namespace tsnative {

struct TopK {
  at::Tensor probabilities;  // [..., k] float, descending
  at::Tensor indices;        // [..., k] int64
  int64_t classes = 0;       // the size of the logits' last dimension
};

// How many classes top-k shows when the caller does not say: this many, or all there are.
constexpr int64_t kDefaultTopK = 5;

// Softmax over the last dimension of `logits`, then its k largest entries (unset: kDefaultTopK,
// or every class where there are fewer). Throws OptionError if k < 1 or k is more than the
// classes there are (asked for 10 of 4: an answer of 4 would hide that), InferenceError if
// `logits` is not a floating point tensor of at least one dimension.
TopK softmax_topk(const at::Tensor& logits, std::optional<int64_t> k = std::nullopt);

// Whether softmax + top-k make sense of a method's output: a floating-point tensor of at least
// one dimension whose last has two or more classes (not one probability, not a tuple).
bool is_class_scores(const c10::IValue& output);

// The same for a method's output, which must be a tensor; the error names what it was instead.
TopK softmax_topk(const c10::IValue& output, std::optional<int64_t> k = std::nullopt);

}  // namespace tsnative
