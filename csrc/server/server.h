// The inference server: the models of a repository (repository.h), each loaded by the core,
// described (served_model.h) and fed by a dynamic batcher (batcher.h), behind KServe's Open
// Inference Protocol v2 over HTTP/1.1 (cpp-httplib), with Triton's binary tensor data and
// classification extensions and its metric names at /metrics. No Python anywhere here.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "core/load_options.h"
#include "server/served_model.h"

namespace tsnative::server {

struct ServerOptions {
  std::string path;                // a model file, a folder of them, or a repository
  std::string host = "127.0.0.1";  // loopback unless told otherwise
  int http_port = 8000;            // 0: any free port (bound_port() says which)
  int http_threads = 128;          // connections served at once (keep-alive holds one each)
  int64_t max_request_bytes = int64_t{64} << 20;  // larger bodies get 413
  int timeout_s = 30;        // a client silent this long while sending or receiving
  ModelConfig defaults;      // every model's config, under its own config file
  LoadOptions load;          // device (and the rest) for every model
  bool log_requests = true;  // one line per request on the log
};

// One line to the log (stderr for ts-infer serve), whole, from any thread.
using LogLine = std::function<void(const std::string& line)>;

class Server {
 public:
  // Finds the models (nothing is loaded yet). Throws OptionError (see find_models); `log`
  // gets a line for each file it leaves out.
  Server(ServerOptions options, LogLine log);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds the HTTP port; returns it (the chosen one for port 0). Throws OptionError if it
  // cannot be bound (in use, no such address).
  int bind();

  // Serves on the bound port while loading and warming up every model (the server is live at
  // once, ready once all have loaded: then the log gets "ready: NAME (version V, platform),
  // ..."), until stop(). Throws the core's LoadError / OptionError
  // if a model fails to load, after the HTTP side has stopped.
  void serve();

  // Stops serving: no new connections, requests in flight finish, then serve() returns.
  // Safe from any thread, before or during serve().
  void stop();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace tsnative::server
