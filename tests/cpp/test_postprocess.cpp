// softmax_topk: probabilities against a softmax computed by hand, order, clamping, batches,
// and the errors for bad k and bad outputs.
#include "core/postprocess.h"

#include <cmath>
#include <vector>

#include "core/errors.h"
#include "test_support.h"

namespace {

using tsnative::InferenceError;
using tsnative::OptionError;
using tsnative::softmax_topk;
using tsnative_test::ThrowsWith;

// float32 softmax of a handful of values agrees with a double computation to about 1e-7.
constexpr double kProbabilityTolerance = 1e-6;

// softmax(values) computed by hand in double precision.
std::vector<double> softmax(const std::vector<double>& values) {
  double sum = 0;
  for (double v : values) sum += std::exp(v);
  std::vector<double> result;
  for (double v : values) result.push_back(std::exp(v) / sum);
  return result;
}

void expect_probabilities(const at::Tensor& actual, const std::vector<double>& expected) {
  ASSERT_EQ(actual.dim(), 1);
  ASSERT_EQ(actual.size(0), static_cast<int64_t>(expected.size()));
  const auto values = actual.to(torch::kDouble).contiguous();
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_NEAR(values[i].item<double>(), expected[i], kProbabilityTolerance) << "entry " << i;
  }
}

TEST(SoftmaxTopKTest, MatchesSoftmaxComputedByHand) {
  const auto p = softmax({1.0, 2.0, 3.0});
  const auto top = softmax_topk(torch::tensor({1.0f, 2.0f, 3.0f}), 3);
  expect_probabilities(top.probabilities, {p[2], p[1], p[0]});
  EXPECT_TRUE(torch::equal(top.indices, torch::tensor({2, 1, 0}, torch::kLong)));
  EXPECT_EQ(top.probabilities.scalar_type(), torch::kFloat);
  EXPECT_EQ(top.indices.scalar_type(), torch::kLong);
  // By hand: e^3 / (e + e^2 + e^3) = 0.66524...
  EXPECT_NEAR(top.probabilities[0].item<double>(), 0.6652409557748219, kProbabilityTolerance);
}

TEST(SoftmaxTopKTest, KeepsTheKLargestInDescendingOrder) {
  const std::vector<double> logits = {0.5, -1.0, 3.0, 2.0, 0.0};
  const auto p = softmax(logits);
  const auto top = softmax_topk(torch::tensor({0.5f, -1.0f, 3.0f, 2.0f, 0.0f}), 2);
  EXPECT_TRUE(torch::equal(top.indices, torch::tensor({2, 3}, torch::kLong)));
  expect_probabilities(top.probabilities, {p[2], p[3]});
}

TEST(SoftmaxTopKTest, UnsetKIsFiveOrEveryClassWhereThereAreFewer) {
  const auto p = softmax({1.0, 2.0, 3.0});
  const auto top = softmax_topk(torch::tensor({1.0f, 2.0f, 3.0f}));
  EXPECT_EQ(top.probabilities.sizes(), (std::vector<int64_t>{3}));
  EXPECT_EQ(top.indices.sizes(), (std::vector<int64_t>{3}));
  expect_probabilities(top.probabilities, {p[2], p[1], p[0]});
  EXPECT_NEAR(top.probabilities.sum().item<double>(), 1.0, kProbabilityTolerance);
  EXPECT_EQ(softmax_topk(torch::zeros({2, 8})).indices.sizes(), (std::vector<int64_t>{2, 5}));
}

TEST(SoftmaxTopKTest, KAboveTheNumberOfClassesIsAnOptionError) {
  // Asked for 10 of 3, an answer of 3 would look like the 10 asked for.
  EXPECT_TRUE(
      ThrowsWith<OptionError>([] { softmax_topk(torch::zeros({1, 3}), 10); },
                              {"top-k of 10 classes, but the output has 3", "ask for at most 3"}));
  EXPECT_EQ(softmax_topk(torch::zeros({1, 3}), 3).indices.size(1), 3);
}

TEST(SoftmaxTopKTest, EachRowOfABatchIsItsOwnDistribution) {
  const auto first = softmax({1.0, 2.0, 3.0});
  const auto second = softmax({10.0, 0.0, 5.0});
  const auto top = softmax_topk(torch::tensor({{1.0f, 2.0f, 3.0f}, {10.0f, 0.0f, 5.0f}}), 2);
  ASSERT_EQ(top.probabilities.sizes(), (std::vector<int64_t>{2, 2}));
  EXPECT_TRUE(torch::equal(top.indices, torch::tensor({{2, 1}, {0, 2}}, torch::kLong)));
  expect_probabilities(top.probabilities[0], {first[2], first[1]});
  expect_probabilities(top.probabilities[1], {second[0], second[2]});

  // The same rows in a [2, 1, 3] tensor: only the last dimension is reduced.
  const auto deep = softmax_topk(torch::tensor({{{1.0f, 2.0f, 3.0f}}, {{10.0f, 0.0f, 5.0f}}}), 1);
  ASSERT_EQ(deep.probabilities.sizes(), (std::vector<int64_t>{2, 1, 1}));
  EXPECT_TRUE(torch::equal(deep.indices, torch::tensor({{{2}}, {{0}}}, torch::kLong)));
  EXPECT_NEAR(deep.probabilities[0][0][0].item<double>(), first[2], kProbabilityTolerance);
  EXPECT_NEAR(deep.probabilities[1][0][0].item<double>(), second[0], kProbabilityTolerance);
}

TEST(SoftmaxTopKTest, ResultDoesNotRequireGrad) {
  const auto logits = torch::tensor({1.0f, 2.0f, 3.0f}).requires_grad_();
  const auto top = softmax_topk(logits, 2);
  EXPECT_FALSE(top.probabilities.requires_grad());
}

TEST(SoftmaxTopKTest, KBelowOneIsAnOptionError) {
  const auto logits = torch::tensor({1.0f, 2.0f, 3.0f});
  EXPECT_TRUE(ThrowsWith<OptionError>([&] { softmax_topk(logits, 0); }, {"k >= 1", "got 0"}));
  EXPECT_TRUE(ThrowsWith<OptionError>([&] { softmax_topk(logits, -2); }, {"k >= 1", "got -2"}));
}

TEST(SoftmaxTopKTest, IntegerTensorIsAnInferenceError) {
  EXPECT_TRUE(
      ThrowsWith<InferenceError>([] { softmax_topk(torch::tensor({1, 2, 3}, torch::kLong), 1); },
                                 {"floating-point", "Long", "[3]"}));
}

TEST(SoftmaxTopKTest, ZeroDimensionalTensorIsAnInferenceError) {
  EXPECT_TRUE(ThrowsWith<InferenceError>([] { softmax_topk(torch::tensor(2.5f), 1); },
                                         {"at least one dimension", "shape []"}));
}

TEST(SoftmaxTopKTest, IValueHoldingATensorGivesTheSameResult) {
  const auto logits = torch::tensor({0.5f, -1.0f, 3.0f});
  const auto from_tensor = softmax_topk(logits, 2);
  const auto from_ivalue = softmax_topk(c10::IValue(logits), 2);
  EXPECT_TRUE(torch::equal(from_ivalue.probabilities, from_tensor.probabilities));
  EXPECT_TRUE(torch::equal(from_ivalue.indices, from_tensor.indices));
}

TEST(SoftmaxTopKTest, IValueThatIsNotATensorIsAnInferenceErrorNamingItsType) {
  const auto logits = torch::tensor({1.0f, 2.0f});
  const c10::IValue tuple = c10::ivalue::Tuple::create({logits, logits});
  EXPECT_TRUE(
      ThrowsWith<InferenceError>([&] { softmax_topk(tuple, 1); }, {"return a tensor", "Tuple"}));
  EXPECT_TRUE(ThrowsWith<InferenceError>([&] { softmax_topk(c10::IValue(), 1); }, {"None"}));
}

}  // namespace
