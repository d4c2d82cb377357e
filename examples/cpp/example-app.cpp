// example-app MODEL IMAGE...: loads a classifier exported with tsnative.export (its labels
// and preprocessing inside) and prints each image's top-5 — the C++ loading tutorial's
// example-app, with the decoding, preprocessing and labels it leaves to the reader.
#include <iomanip>
#include <iostream>
#include <string>
#include <vector>

#include <tsnative/tsnative.h>

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: example-app MODEL IMAGE...\n";
    return 2;
  }
  try {
    const auto model = tsnative::Model::load(argv[1]);
    const std::vector<std::string> images(argv + 2, argv + argc);
    int status = 0;
    for (const auto& result : tsnative::classify(*model, images)) {
      if (!result.ok()) {
        std::cerr << "example-app: " << result.error << "\n";
        status = 1;
        continue;
      }
      std::cout << result.path << "\n";
      for (const auto& prediction : result.predictions) {
        const auto name =
            prediction.label.empty() ? std::to_string(prediction.index) : prediction.label;
        std::cout << "  " << name << ": " << std::fixed << std::setprecision(2)
                  << 100 * prediction.probability << "%\n";
      }
    }
    return status;
  } catch (const tsnative::Error& error) {
    std::cerr << "example-app: " << error.what() << "\n";
    return 1;
  }
}
