#include "trainer/engine/distributed_backend.h"

// LibTorch builds ship ProcessGroupGloo in libtorch_cpu; Debian's Torch CMake config exports the
// macro that declares it, other packagings may not. Its header needs Gloo's headers, which pip's
// CUDA wheels leave out: trainer/CMakeLists.txt then defines PECO_WITHOUT_GLOO.
#if !defined(PECO_WITHOUT_GLOO)
#define PECO_HAS_GLOO 1
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO 1
#endif
#endif

#include <torch/version.h>

// ProcessGroupNCCL's header needs nccl.h, which not every CUDA LibTorch packaging puts on the
// include path; -DPECO_WITH_NCCL=OFF (trainer/CMakeLists.txt) builds without it.
#if defined(USE_C10D_NCCL) && !defined(PECO_WITHOUT_NCCL)
#define PECO_HAS_NCCL 1
#endif

#if TORCH_VERSION_MAJOR >= 2
#include <torch/csrc/distributed/c10d/Backend.hpp>
#else
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#endif
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#if defined(PECO_HAS_GLOO)
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#if defined(PECO_HAS_NCCL)
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <signal.h>

#include <cstdlib>
#include <string>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "trainer/util/torch_status.h"

namespace peco::trainer {
namespace {

// NOTE [c10d versions]: up to LibTorch 1.x ProcessGroupGloo and ProcessGroupNCCL derive from
// c10d::ProcessGroup; from 2.0 on they derive from c10d::Backend and ProcessGroup became a
// dispatcher over backends. Both bases offer allreduce/broadcast/barrier with the same
// signatures, so peco holds the concrete backend through whichever base this LibTorch has.
#if TORCH_VERSION_MAJOR >= 2
using BackendBase = ::c10d::Backend;
#else
using BackendBase = ::c10d::ProcessGroup;
#endif

// Slack on top of the backend's own timeout before this rank stops waiting for a work item:
// the backend normally reports first, with a more specific message.
constexpr std::chrono::milliseconds kWaitSlack = std::chrono::seconds(5);

class C10dGroup final : public CollectiveGroup {
 public:
  C10dGroup(int rank, std::chrono::milliseconds timeout, c10::intrusive_ptr<::c10d::Store> store,
            c10::intrusive_ptr<BackendBase> backend)
      : rank_(rank), timeout_(timeout), store_(std::move(store)), backend_(std::move(backend)) {}

  ~C10dGroup() override {
    // The backend talks to peers through sockets set up via the store; drop it first.
    backend_.reset();
    store_.reset();
  }

  absl::Status AllReduceSum(std::vector<torch::Tensor>& tensors) override {
    return Run("allreduce", [&] {
      ::c10d::AllreduceOptions options;
      options.reduceOp = ::c10d::ReduceOp::SUM;
      options.timeout = timeout_;
      // A c10d call's tensor list holds one replica per local device, so each of our tensors is
      // its own collective. All are queued before waiting so the backend can pipeline them.
      std::vector<c10::intrusive_ptr<::c10d::Work>> works;
      for (torch::Tensor& t : tensors) {
        std::vector<at::Tensor> one{t};
        works.push_back(backend_->allreduce(one, options));
      }
      for (auto& work : works) work->wait(timeout_ + kWaitSlack);
    });
  }

  absl::Status Broadcast(std::vector<torch::Tensor>& tensors, int root) override {
    return Run(absl::StrCat("broadcast from rank ", root), [&] {
      ::c10d::BroadcastOptions options;
      options.rootRank = root;
      options.rootTensor = 0;
      options.timeout = timeout_;
      std::vector<c10::intrusive_ptr<::c10d::Work>> works;
      for (torch::Tensor& t : tensors) {
        std::vector<at::Tensor> one{t};
        works.push_back(backend_->broadcast(one, options));
      }
      for (auto& work : works) work->wait(timeout_ + kWaitSlack);
    });
  }

  absl::Status Barrier() override {
    return Run("barrier", [&] {
      ::c10d::BarrierOptions options;
      options.timeout = timeout_;
      backend_->barrier(options)->wait(timeout_ + kWaitSlack);
    });
  }

 private:
  // A failed collective means a peer died, stalled or disconnected: Unavailable, so the job is
  // restarted as a whole.
  template <typename Fn>
  absl::Status Run(const std::string& operation, Fn&& fn) {
    const absl::Status status = TorchCall(absl::StrCat("rank ", rank_, ": ", operation), fn);
    if (status.ok()) return status;
    return absl::UnavailableError(status.message());
  }

  const int rank_;
  const std::chrono::milliseconds timeout_;
  c10::intrusive_ptr<::c10d::Store> store_;
  c10::intrusive_ptr<BackendBase> backend_;
};

// Gloo writes to peers' sockets with plain writes: once a peer has died, the next write raises
// SIGPIPE, whose default action would kill this rank before the collective can fail with a
// Status. Ignores it unless the program installed its own handler.
void IgnoreSigpipe() {
  struct sigaction current {};
  if (sigaction(SIGPIPE, nullptr, &current) == 0 && current.sa_handler == SIG_DFL) {
    signal(SIGPIPE, SIG_IGN);
  }
}

#if defined(PECO_HAS_GLOO)
bool IsLoopback(const std::string& host) {
  return host == "localhost" || absl::StartsWith(host, "127.") || host == "::1";
}

// The address Gloo listens on and advertises to peers: GLOO_SOCKET_IFNAME's interface when set
// (torch's convention), else PECO_RANK_HOST (the address peco-worker's --host says other ranks
// reach this machine at), loopback for single-host jobs on 127.0.0.1, else this host's name.
std::shared_ptr<::gloo::transport::Device> GlooDevice(const DistributedOptions& options) {
  if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname != nullptr && *ifname) {
    return ::c10d::ProcessGroupGloo::createDeviceForInterface(ifname);
  }
  if (const char* host = std::getenv("PECO_RANK_HOST"); host != nullptr && *host) {
    return ::c10d::ProcessGroupGloo::createDeviceForHostname(host);
  }
  if (IsLoopback(options.master_addr)) {
    return ::c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1");
  }
  return ::c10d::ProcessGroupGloo::createDefaultDevice();
}
#endif

absl::StatusOr<c10::intrusive_ptr<BackendBase>> MakeBackend(
    const DistributedOptions& options, const c10::intrusive_ptr<::c10d::Store>& store) {
  const std::string context =
      absl::StrCat("rank ", options.rank, ": connecting to ", options.world_size - 1, " peers");
  if (options.device.is_cuda()) {
#if defined(PECO_HAS_NCCL)
    // Without blocking wait NCCL ignores the timeout and a dead peer hangs the step; the
    // variable is read when the group is created (2.x name first, then the 1.x one).
    setenv("TORCH_NCCL_BLOCKING_WAIT", "1", /*overwrite=*/0);
    setenv("NCCL_BLOCKING_WAIT", "1", /*overwrite=*/0);
    return TorchCall(context, [&]() -> c10::intrusive_ptr<BackendBase> {
      auto nccl_options = ::c10d::ProcessGroupNCCL::Options::create();
      nccl_options->timeout = options.collective_timeout;
      return c10::make_intrusive<::c10d::ProcessGroupNCCL>(store, options.rank, options.world_size,
                                                           nccl_options);
    });
#endif
  }
#if defined(PECO_HAS_GLOO)
  return TorchCall(context, [&]() -> c10::intrusive_ptr<BackendBase> {
    auto gloo_options = ::c10d::ProcessGroupGloo::Options::create(options.collective_timeout);
    gloo_options->devices.push_back(GlooDevice(options));
    gloo_options->threads = 2;
    return c10::make_intrusive<::c10d::ProcessGroupGloo>(store, options.rank, options.world_size,
                                                         gloo_options);
  });
#else
  (void)store;
  return absl::FailedPreconditionError(
      absl::StrCat(context, ": distributed.device ", options.device.str(),
                   " needs ProcessGroupGloo, but this trainer was built without Gloo's headers"));
#endif
}

}  // namespace

bool BuiltWithNccl() {
#if defined(PECO_HAS_NCCL)
  return true;
#else
  return false;
#endif
}

absl::StatusOr<std::unique_ptr<CollectiveGroup>> ConnectC10dGroup(
    const DistributedOptions& options) {
#if !defined(PECO_HAS_NCCL)
  // Refused before the store so that no rank waits for a peer that cannot join.
  if (options.device.is_cuda()) {
    return absl::FailedPreconditionError(
        absl::StrCat("distributed.device: ", options.device.str(),
                     " needs ProcessGroupNCCL, but this trainer was built without it (LibTorch "
                     "with CUDA and USE_C10D_NCCL, PECO_WITH_NCCL=ON); use a CPU device for "
                     "Gloo"));
  }
#endif
  IgnoreSigpipe();
  absl::StatusOr<c10::intrusive_ptr<::c10d::Store>> store = TorchCall(
      absl::StrCat("rank ", options.rank, ": ", options.rank == 0 ? "hosting" : "reaching",
                   " the store at ", options.master_addr, ":", options.master_port),
      [&]() -> c10::intrusive_ptr<::c10d::Store> {
        ::c10d::TCPStoreOptions store_options;
        store_options.port = static_cast<uint16_t>(options.master_port);
        store_options.isServer = options.rank == 0;
        store_options.numWorkers = static_cast<size_t>(options.world_size);
        store_options.waitWorkers = true;
        store_options.timeout = options.rendezvous_timeout;
        auto tcp = c10::make_intrusive<::c10d::TCPStore>(options.master_addr, store_options);
        return c10::make_intrusive<::c10d::PrefixStore>(
            absl::StrCat("peco/", options.job_id, "/", options.attempt), tcp);
      });
  if (!store.ok()) return absl::UnavailableError(store.status().message());
  absl::StatusOr<c10::intrusive_ptr<BackendBase>> backend = MakeBackend(options, *store);
  if (!backend.ok()) {
    if (absl::IsFailedPrecondition(backend.status())) return backend.status();
    return absl::UnavailableError(backend.status().message());
  }
  return std::unique_ptr<CollectiveGroup>(std::make_unique<C10dGroup>(
      options.rank, options.collective_timeout, *std::move(store), *std::move(backend)));
}

}  // namespace peco::trainer
