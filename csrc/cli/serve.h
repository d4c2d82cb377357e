// `ts-infer serve`: the inference server's command line (csrc/server/ does the serving).
#pragma once

namespace tsnative::cli {

// Runs `ts-infer serve ARGS...` (argv[0] is "serve"): 0 after a clean shutdown (SIGTERM or
// SIGINT), 1 if a model fails to load, 2 for a usage error.
int serve_main(int argc, char** argv);

}  // namespace tsnative::cli
