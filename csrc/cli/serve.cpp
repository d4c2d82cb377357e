#include "cli/serve.h"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <iostream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>

#include "core/errors.h"
#include "core/runtime.h"
#include "server/server.h"

namespace tsnative::cli {

namespace {

void add_flags(CLI::App& app, server::ServerOptions& options, std::string& optimize,
               std::string& log_level, std::string& model_control, std::optional<int>& threads,
               std::vector<std::string>& libraries) {
  auto& repository = options.repository;
  app.add_option("path", repository.path,
                 "A model file (.pt, .pt2), a folder of them (each served under its stem), or a "
                 "Triton-style repository (NAME/VERSION/model.pt or model.pt2, NAME/config.json)")
      ->required();
  app.add_option("--host", options.host,
                 "Address to listen on (loopback unless told otherwise; 0.0.0.0 for every one)")
      ->capture_default_str();
  app.add_option("--http-port", options.http_port, "HTTP port (0: any free port)")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  app.add_option("--grpc-port", options.grpc_port,
                 "gRPC port (inference.GRPCInferenceService; 0: any free port, -1: no gRPC)")
      ->check(CLI::Range(-1, 65535))
      ->capture_default_str();
  app.add_option("--http-threads", options.http_threads,
                 "Connections served at once (each keep-alive connection holds one)")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  app.add_option("--max-request-bytes", options.max_request_bytes,
                 "Largest request body accepted (larger: 413)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 40))
      ->capture_default_str();
  app.add_option("--timeout", options.timeout_s,
                 "Seconds a client may stall while sending or receiving before it is dropped")
      ->check(CLI::Range(1, 3600))
      ->capture_default_str();
  const std::string control = "Model control (Triton's model repository extension)";
  app.add_option("--model-control", model_control,
                 "none: the models found, loaded at start; explicit: those of --load-model, "
                 "then POST /v2/repository/models/NAME/load and /unload (and gRPC's); poll: the "
                 "models found, reloaded as their files change")
      ->check(CLI::IsMember({"none", "explicit", "poll"}))
      ->capture_default_str()
      ->group(control);
  app.add_option("--load-model", repository.load_at_start,
                 "A model to load at start under --model-control explicit (repeat for several; "
                 "* for all)")
      ->type_name("NAME")
      ->group(control);
  app.add_option("--repository-poll-secs", repository.poll_seconds,
                 "Seconds between rescans of the repository under --model-control poll")
      ->check(CLI::Range(1, 86400))
      ->capture_default_str()
      ->group(control);
  app.add_option("--device", repository.load.device, "cpu, cuda or cuda:N")->capture_default_str();
  app.add_option("--threads", threads, "Intra-op threads (LibTorch's default if unset)")
      ->check(CLI::Range(1, 1024));
  app.add_option("--load-library", libraries,
                 "A shared library registering TorchScript operators the models call")
      ->type_name("FILE");
  const std::string batching = "Every model (a model's config.json overrides these)";
  auto& defaults = repository.defaults;
  app.add_option("--max-batch-size", defaults.max_batch_size,
                 "Rows one forward call may stack from waiting requests (0: no batching)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 20))
      ->capture_default_str()
      ->group(batching);
  app.add_option("--preferred-batch-size", defaults.preferred_batch_sizes,
                 "Run a batch as soon as it has this many rows (repeat for several)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20))
      ->group(batching);
  app.add_option("--max-queue-delay-us", defaults.max_queue_delay_us,
                 "Microseconds a request may wait for others to join its batch")
      ->check(CLI::Range(int64_t{0}, int64_t{10'000'000}))
      ->capture_default_str()
      ->group(batching);
  app.add_option("--instances", defaults.instances,
                 "Threads running each model's forward, sharing its weights")
      ->check(CLI::Range(int64_t{1}, int64_t{256}))
      ->capture_default_str()
      ->group(batching);
  app.add_option("--optimize", optimize, "Optimize level of TorchScript models")
      ->check(CLI::IsMember(optimize_level_names()))
      ->capture_default_str()
      ->group(batching);
  app.add_option("--log-level", log_level,
                 "info: a line per request on stderr; error: only failures and shutdown")
      ->check(CLI::IsMember({"info", "error"}))
      ->capture_default_str();
}

std::string url(const char* scheme, const std::string& host, int port) {
  const bool ipv6 = host.find(':') != std::string::npos;
  return std::string(scheme) + "://" + (ipv6 ? "[" + host + "]" : host) + ":" +
         std::to_string(port);
}

}  // namespace

int serve_main(int argc, char** argv) {
  CLI::App app{
      "Serve models over KServe's Open Inference Protocol v2, REST and gRPC, as Triton does: "
      "/v2/health/live, /v2/health/ready, /v2/models/NAME[/versions/V][/ready|/infer], "
      "/v2/repository/index, /v2/repository/models/NAME/load|unload, /metrics, and "
      "inference.GRPCInferenceService. Stops on SIGTERM or Ctrl-C, finishing the requests in "
      "flight.",
      "ts-infer serve"};
  server::ServerOptions options;
  std::string optimize = "none", log_level = "info", model_control = "none";
  std::optional<int> threads;
  std::vector<std::string> libraries;
  add_flags(app, options, optimize, log_level, model_control, threads, libraries);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "ts-infer serve: " << e.what() << " (see ts-infer serve --help)" << std::endl;
    return 2;
  }
  options.repository.defaults.optimize = optimize;
  options.repository.control = *server::parse_model_control(model_control);
  options.log_requests = log_level == "info";
  if (!options.repository.load_at_start.empty() &&
      options.repository.control != server::ModelControl::kExplicit) {
    std::cerr << "ts-infer serve: --load-model needs --model-control explicit (the others load "
                 "every model found)"
              << std::endl;
    return 2;
  }

  // SIGINT and SIGTERM go to one thread, which stops the server; every other thread (the
  // HTTP workers, the batchers, LibTorch's pool) inherits the mask and never sees them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGUSR1);  // from this thread, when the server stopped on its own
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  std::mutex log_mutex;
  const auto log = [&log_mutex](const std::string& line) {
    std::lock_guard<std::mutex> lock(log_mutex);
    std::cerr << "ts-infer serve: " << line << std::endl;
  };
  try {
    if (threads) set_num_threads(*threads);
    for (const auto& library : libraries) load_library(library);
    server::Server server(options, log);
    const auto ports = server.bind();
    log("listening on " + url("http", options.host, ports.http) +
        (ports.grpc >= 0 ? " and " + url("grpc", options.host, ports.grpc) : "") +
        " (loading models)");
    std::thread stopper([&] {
      int signal_number = 0;
      sigwait(&signals, &signal_number);
      if (signal_number == SIGUSR1) return;
      log(std::string("stopping on ") + (signal_number == SIGINT ? "SIGINT" : "SIGTERM") +
          ": finishing the requests in flight");
      server.stop();
    });
    try {
      server.serve();
    } catch (...) {
      kill(getpid(), SIGUSR1);
      stopper.join();
      throw;
    }
    kill(getpid(), SIGUSR1);  // wakes the signal thread if no signal stopped the server
    stopper.join();
    log("stopped");
    return 0;
  } catch (const OptionError& e) {
    std::cerr << "ts-infer serve: " << e.what() << std::endl;
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "ts-infer serve: error: " << e.what() << std::endl;
    return 1;
  }
}

}  // namespace tsnative::cli
