// Pytree specs as torch.export records them in a package's call spec (strings copied from an
// aoti_compile_and_package of a model returning {"logits": t, "feat": (t, t)}).
#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "core/backends/aoti/pytree_spec.h"

namespace {

using tsnative::TreeSpec;

const char* kLeaf = R"({"type": null, "context": null, "children_spec": []})";

std::string node(const std::string& type, const std::string& context,
                 const std::vector<std::string>& children) {
  std::string joined;
  for (const auto& child : children) joined += (joined.empty() ? "" : ", ") + child;
  return R"({"type": ")" + type + R"(", "context": )" + context + R"(, "children_spec": [)" +
         joined + "]}";
}

std::string spec(const std::string& root) { return "[1, " + root + "]"; }

TEST(PytreeSpecTest, ReadsForwardsArgumentsAndKwargs) {
  const auto in = tsnative::parse_tree_spec(spec(node(
      "builtins.tuple", "\"null\"",
      {node("builtins.tuple", "\"null\"", {kLeaf, kLeaf}), node("builtins.dict", "\"[]\"", {})})));
  ASSERT_EQ(in.kind, TreeSpec::Kind::kTuple);
  ASSERT_EQ(in.children.size(), 2u);
  EXPECT_EQ(in.children[0].leaves(), 2u);
  EXPECT_EQ(in.children[1].kind, TreeSpec::Kind::kDict);
  EXPECT_EQ(in.leaves(), 2u);
}

TEST(PytreeSpecTest, NestsOutputsAsTheEagerModelReturnedThem) {
  const auto out = tsnative::parse_tree_spec(
      spec(node("builtins.dict", R"("[\"logits\", \"feat\"]")",
                {kLeaf, node("builtins.tuple", "\"null\"", {kLeaf, kLeaf})})));
  EXPECT_EQ(out.keys, (std::vector<std::string>{"logits", "feat"}));
  EXPECT_EQ(tsnative::tree_type(out)->str(), "Dict(str, Any)");
  const auto a = at::ones({2}), b = at::zeros({1}), c = at::full({3}, 2.0);
  const auto value = tsnative::unflatten(out, {a, b, c});
  ASSERT_TRUE(value.isGenericDict());
  const auto dict = value.toGenericDict();
  EXPECT_EQ(dict.begin()->key().toStringRef(), "logits");  // insertion order kept
  EXPECT_TRUE(dict.at("logits").toTensor().equal(a));
  const auto feat = dict.at("feat").toTupleRef().elements();
  ASSERT_EQ(feat.size(), 2u);
  EXPECT_TRUE(feat[0].toTensor().equal(b));
  EXPECT_TRUE(feat[1].toTensor().equal(c));

  const auto list = tsnative::parse_tree_spec(spec(node("builtins.list", "\"null\"", {kLeaf})));
  EXPECT_EQ(tsnative::tree_type(list)->str(), "Tensor[]");
  EXPECT_TRUE(tsnative::unflatten(list, {a}).toList().get(0).toTensor().equal(a));
  EXPECT_EQ(tsnative::tree_type(tsnative::parse_tree_spec(spec(kLeaf)))->str(), "Tensor");
}

TEST(PytreeSpecTest, RefusesWhatItCannotRepresent) {
  for (const auto& bad : {
           std::string("not json"),
           std::string("[2, ") + kLeaf + "]",  // another protocol
           spec(node("mymodule.Point", "\"null\"", {kLeaf})),
           spec(node("builtins.dict", R"("[\"a\"]")", {})),  // a key without a value
           spec(node("builtins.dict", R"("[[1, 2]]")", {kLeaf})),
       }) {
    EXPECT_THROW(tsnative::parse_tree_spec(bad), std::invalid_argument) << bad;
  }
  const auto two =
      tsnative::parse_tree_spec(spec(node("builtins.tuple", "\"null\"", {kLeaf, kLeaf})));
  EXPECT_THROW(tsnative::unflatten(two, {at::ones({1})}), std::invalid_argument);
}

}  // namespace
