// The README's C++ example, whole: the tests build it and check that the README shows it as is.
#include <torch/torch.h>  // torch::rand; tsnative.h brings only what its API takes and returns
#include <tsnative/tsnative.h>

#include <iostream>

int main() {
  auto model = tsnative::Model::load("classifier.pt");  // same options, errors and metadata
  auto y = model->forward({torch::rand({1, 3, 224, 224})});
  for (const auto& r : tsnative::classify(*model, {"tiger.jpg"})) {
    std::cout << r.path << ": " << r.predictions[0].label << "\n";
  }
}
