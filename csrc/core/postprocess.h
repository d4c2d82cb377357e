// Classification post-processing: softmax over the last dimension, then the k best classes.
#pragma once

#include <cstdint>

#include <ATen/core/Tensor.h>
#include <ATen/core/ivalue.h>

namespace tsnative {

struct TopK {
  at::Tensor probabilities;  // [..., k] float, descending
  at::Tensor indices;        // [..., k] int64
  int64_t classes = 0;       // the size of the logits' last dimension
};

// Softmax over the last dimension of `logits`, then its k largest entries. k is clamped to the
// number of classes. Throws OptionError if k < 1, InferenceError if `logits` is not a floating
// point tensor of at least one dimension.
TopK softmax_topk(const at::Tensor& logits, int64_t k);

// Whether softmax + top-k make sense of a method's output: a floating-point tensor of at least
// one dimension whose last has two or more classes (not one probability, not a tuple).
bool is_class_scores(const c10::IValue& output);

// The same for a method's output, which must be a tensor; the error names what it was instead.
TopK softmax_topk(const c10::IValue& output, int64_t k);

}  // namespace tsnative
