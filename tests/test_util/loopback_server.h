// A gRPC server on 127.0.0.1 and a free port, serving the given services (real ones or fakes),
// for tests of clients and adapters; shut down when the object is destroyed.
//
//   FakeWorkerService service;
//   peco::testing::LoopbackServer server({&service});
//   auto channel = grpc::CreateChannel(server.address(), grpc::InsecureChannelCredentials());
//
// Header-only; for the test binaries that link gRPC (coordinator, worker, cli). The services are
// borrowed and must outlive the server. Thread-safety: as grpc::Server.
#ifndef PECO_TESTS_TEST_UTIL_LOOPBACK_SERVER_H_
#define PECO_TESTS_TEST_UTIL_LOOPBACK_SERVER_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace peco::testing {

class LoopbackServer {
 public:
  // `max_receive_bytes` > 0 sets the server's message size limit.
  explicit LoopbackServer(const std::vector<grpc::Service*>& services, int max_receive_bytes = 0) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    if (max_receive_bytes > 0) builder.SetMaxReceiveMessageSize(max_receive_bytes);
    for (grpc::Service* service : services) builder.RegisterService(service);
    server_ = builder.BuildAndStart();
    if (server_ == nullptr || port_ == 0) ADD_FAILURE() << "the loopback gRPC server did not start";
  }
  ~LoopbackServer() { Shutdown(); }
  LoopbackServer(const LoopbackServer&) = delete;
  LoopbackServer& operator=(const LoopbackServer&) = delete;

  // "127.0.0.1:<port>".
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  int port() const { return port_; }

  // Stops serving (later calls fail UNAVAILABLE); idempotent.
  void Shutdown() {
    if (server_ != nullptr) server_->Shutdown();
  }

 private:
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

}  // namespace peco::testing

#endif  // PECO_TESTS_TEST_UTIL_LOOPBACK_SERVER_H_
