// The inference server: the models of a repository (repository.h, served_models.h), each
// loaded by the core, described (served_model.h) and fed by a dynamic batcher (batcher.h),
// behind KServe's Open Inference Protocol v2 over HTTP/1.1 (cpp-httplib) and gRPC
// (grpc_front.h), with Triton's binary tensor data, classification and model repository
// extensions and its metric names at /metrics. No Python anywhere here.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "server/served_models.h"

namespace tsnative::server {

struct ServerOptions {
  RepositoryOptions repository;    // what is served, and how that may change (model control)
  std::string host = "127.0.0.1";  // loopback unless told otherwise
  int http_port = 8000;            // 0: any free port (bind() says which)
  int grpc_port = 8001;            // the same for gRPC; -1: no gRPC
  int http_threads = 128;          // connections served at once (keep-alive holds one each)
  int64_t max_request_bytes = int64_t{64} << 20;  // larger bodies get 413
  int timeout_s = 30;        // a client silent this long while sending or receiving
  bool log_requests = true;  // one line per request on the log
};

class Server {
 public:
  // Finds the models (nothing is loaded yet). Throws OptionError (see find_models); `log`
  // gets a line for each file it leaves out.
  Server(ServerOptions options, LogLine log);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds the HTTP port and starts the gRPC front on its own (both serve from here on, ready
  // once serve() has loaded the models); returns the ports (the chosen ones for port 0; grpc
  // -1 without gRPC). Throws OptionError if one cannot be bound (in use, no such address).
  struct Ports {
    int http = -1;
    int grpc = -1;
  };
  Ports bind();

  // Serves on the bound ports while loading and warming up the models the control mode starts
  // with (the server is live at once, ready once they have loaded: then the log gets "ready:
  // NAME (version V, platform), ..."), then polls the repository under --model-control poll,
  // until stop(). Throws the core's LoadError / OptionError if a model fails to load at
  // start, after both fronts have stopped.
  void serve();

  // Stops serving: no new connections, requests in flight finish, then serve() returns.
  // Safe from any thread, before or during serve().
  void stop();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace tsnative::server
