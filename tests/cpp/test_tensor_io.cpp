// save_value / load_value: exact round trips of tensors and containers in torch.save's format,
// and the errors for files that are missing or are not torch.save files.
#include "core/tensor_io.h"

#include <string>
#include <vector>

#include "core/errors.h"
#include "test_support.h"

namespace {

using tsnative::InputError;
using tsnative::load_value;
using tsnative::save_value;
using tsnative_test::read_bytes;
using tsnative_test::save_module;
using tsnative_test::ThrowsWith;
using tsnative_test::write_bytes;

class TensorIoTest : public tsnative_test::TempDirTest {};

TEST_F(TensorIoTest, TensorRoundTripsExactly) {
  const auto path = tmp_.file("tensor.pt");
  const auto original = torch::tensor({{1.5f, -2.25f, 3.0f}, {1e-30f, -0.0f, 65504.0f}});
  save_value(path, original);
  // torch.save's format is a zip archive.
  const auto bytes = read_bytes(path);
  ASSERT_GE(bytes.size(), 2u);
  EXPECT_EQ(std::string(bytes.begin(), bytes.begin() + 2), "PK");

  const auto loaded = load_value(path);
  ASSERT_TRUE(loaded.isTensor());
  EXPECT_EQ(loaded.toTensor().scalar_type(), torch::kFloat);
  EXPECT_EQ(loaded.toTensor().sizes(), original.sizes());
  EXPECT_TRUE(torch::equal(loaded.toTensor(), original));
}

TEST_F(TensorIoTest, IntegerAndNonContiguousTensorsRoundTripExactly) {
  const auto path = tmp_.file("ints.pt");
  const auto integers = torch::arange(12, torch::kLong).reshape({3, 4}) * -7;
  const auto transposed = integers.t();  // a non-contiguous view
  save_value(path, transposed);
  const auto loaded = load_value(path).toTensor();
  EXPECT_EQ(loaded.scalar_type(), torch::kLong);
  EXPECT_EQ(loaded.sizes(), (std::vector<int64_t>{4, 3}));
  EXPECT_TRUE(torch::equal(loaded, transposed));
  EXPECT_EQ(loaded[3][2].item<int64_t>(), 11 * -7);
}

TEST_F(TensorIoTest, TupleOfTensorsRoundTrips) {
  const auto path = tmp_.file("tuple.pt");
  const auto first = torch::tensor({1.0f, 2.0f, 3.0f});
  const auto second = torch::tensor({{-1, 0}, {7, 8}}, torch::kInt);
  save_value(path, c10::ivalue::Tuple::create({first, second}));

  const auto loaded = load_value(path);
  ASSERT_TRUE(loaded.isTuple());
  const auto& elements = loaded.toTupleRef().elements();
  ASSERT_EQ(elements.size(), 2u);
  EXPECT_TRUE(torch::equal(elements[0].toTensor(), first));
  EXPECT_EQ(elements[1].toTensor().scalar_type(), torch::kInt);
  EXPECT_TRUE(torch::equal(elements[1].toTensor(), second));
}

TEST_F(TensorIoTest, ListAndDictOfTensorsRoundTrip) {
  const auto list_path = tmp_.file("list.pt");
  save_value(list_path, c10::List<at::Tensor>({torch::ones({2}), torch::zeros({1, 3})}));
  const auto list = load_value(list_path);
  // Read back as Python's torch.save writes a list: plain, its elements typed by their values.
  ASSERT_TRUE(list.isList());
  const auto& tensors = list.toListRef();
  ASSERT_EQ(tensors.size(), 2u);
  EXPECT_TRUE(torch::equal(tensors[0].toTensor(), torch::ones({2})));
  EXPECT_TRUE(torch::equal(tensors[1].toTensor(), torch::zeros({1, 3})));

  const auto dict_path = tmp_.file("dict.pt");
  c10::Dict<std::string, at::Tensor> named;
  named.insert("logits", torch::tensor({0.25f, -4.0f}));
  named.insert("mask", torch::tensor({true, false}));
  save_value(dict_path, named);
  const auto dict = load_value(dict_path);
  ASSERT_TRUE(dict.isGenericDict());
  const auto loaded = dict.toGenericDict();
  ASSERT_EQ(loaded.size(), 2u);
  EXPECT_TRUE(torch::equal(loaded.at("logits").toTensor(), torch::tensor({0.25f, -4.0f})));
  EXPECT_TRUE(torch::equal(loaded.at("mask").toTensor(), torch::tensor({true, false})));
}

TEST_F(TensorIoTest, MissingFileIsAnInputError) {
  const auto path = tmp_.file("missing.pt");
  EXPECT_TRUE(ThrowsWith<InputError>([&] { load_value(path); }, {"no such file", path}));
}

TEST_F(TensorIoTest, ADirectoryIsAnInputErrorThatSaysSo) {
  EXPECT_TRUE(
      ThrowsWith<InputError>([&] { load_value(tmp_.path().string()); }, {"it is a directory"}));
}

TEST_F(TensorIoTest, GarbageIsAnInputErrorThatNamesTorchSave) {
  const auto path = tmp_.file("garbage.pt");
  const std::string text = "1.0 2.0 3.0\n";
  write_bytes(path, std::vector<char>(text.begin(), text.end()));
  EXPECT_TRUE(ThrowsWith<InputError>([&] { load_value(path); }, {"torch.save", path}));
}

TEST_F(TensorIoTest, TorchScriptArchiveIsAnInputError) {
  const auto path = save_module(tsnative_test::make_linear_module(), tmp_.file("model.pt"));
  EXPECT_TRUE(ThrowsWith<InputError>([&] { load_value(path); }, {"torch.save", path}));
}

TEST_F(TensorIoTest, UnwritablePathIsAnError) {
  const auto path = tmp_.file("no_such_dir/out.pt");
  EXPECT_TRUE(ThrowsWith<tsnative::Error>([&] { save_value(path, torch::ones({1})); },
                                          {"cannot write", path}));
}

}  // namespace
