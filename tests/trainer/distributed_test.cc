// Data parallelism over c10d on CPU (Gloo on 127.0.0.1).
//
// Two-rank tests run rank 0 in the test process and rank 1 as a child: this binary re-executed
// with --gtest_filter=DistributedRankTest.Rank1 and kRoleEnv naming what rank 1 does; the child
// takes its rank, port, job and attempt from torchrun's variables (DistributedOptionsFromEnv).
#include "trainer/engine/distributed.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "trainer/engine/distributed_backend.h"
#include "trainer/engine/distributed_module.h"

extern char** environ;

namespace peco::trainer {
namespace {

using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;

constexpr char kRoleEnv[] = "PECO_DDP_TEST_ROLE";
constexpr char kTimeoutEnv[] = "PECO_DDP_TEST_TIMEOUT_MS";
constexpr auto kTestTimeout = std::chrono::milliseconds(3000);  // collective timeout, 2 ranks
constexpr auto kChildDeadline = std::chrono::seconds(120);      // generous: 2 busy cores

// A port that was free a moment ago on 127.0.0.1.
int FreePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ADD_FAILURE() << "no free port: " << std::strerror(errno);
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

// Rank 1: this test binary as a child process, stdout on a pipe, stderr inherited.
class RankProcess {
 public:
  RankProcess(const std::string& role, int port) {
    std::vector<std::string> env;
    for (char** e = environ; *e != nullptr; ++e) {
      const std::string entry(*e);
      bool ours = false;
      for (const char* name : {"RANK=", "WORLD_SIZE=", "LOCAL_RANK=", "MASTER_ADDR=",
                               "MASTER_PORT=", "PECO_JOB_ID=", "PECO_ATTEMPT="}) {
        ours = ours || absl::StartsWith(entry, name);
      }
      if (!ours) env.push_back(entry);
    }
    for (const std::string& extra :
         {absl::StrCat(kRoleEnv, "=", role), absl::StrCat(kTimeoutEnv, "=", kTestTimeout.count()),
          std::string("WORLD_SIZE=2"), std::string("RANK=1"), std::string("LOCAL_RANK=1"),
          std::string("MASTER_ADDR=127.0.0.1"), absl::StrCat("MASTER_PORT=", port),
          std::string("PECO_JOB_ID=ddp-test"), std::string("PECO_ATTEMPT=3")}) {
      env.push_back(extra);
    }
    const std::vector<std::string> argv = {"/proc/self/exe",
                                           "--gtest_filter=DistributedRankTest.Rank1"};
    int fds[2];
    if (::pipe(fds) != 0) return;
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], 1);
    posix_spawn_file_actions_addclose(&actions, fds[0]);
    std::vector<char*> args, envp;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    for (const std::string& e : env) envp.push_back(const_cast<char*>(e.c_str()));
    args.push_back(nullptr);
    envp.push_back(nullptr);
    if (posix_spawn(&pid_, args[0], &actions, nullptr, args.data(), envp.data()) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&actions);
    ::close(fds[1]);
    out_ = fds[0];
  }

  ~RankProcess() {
    if (pid_ > 0 && !reaped_) {
      Signal(SIGKILL);
      Wait();
    }
    if (out_ >= 0) ::close(out_);
  }

  bool started() const { return pid_ > 0; }
  void Signal(int signal) { ::kill(pid_, signal); }

  // Reads stdout until a line equal to `want` (true) or EOF / the deadline (false); echoes it.
  bool WaitForLine(const std::string& want, Clock::time_point deadline) {
    std::string line;
    while (Clock::now() < deadline) {
      pollfd p{out_, POLLIN, 0};
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (::poll(&p, 1, static_cast<int>(std::max<int64_t>(left.count(), 0))) <= 0) continue;
      char c;
      if (::read(out_, &c, 1) != 1) return false;
      if (c != '\n') {
        line.push_back(c);
        continue;
      }
      std::printf("[rank 1] %s\n", line.c_str());
      if (line == want) return true;
      line.clear();
    }
    return false;
  }

  // Drains stdout and reaps the child; its exit code, 128 + signal, or -1 past the deadline (then
  // it is killed).
  int Wait(Clock::time_point deadline = Clock::now() + kChildDeadline) {
    WaitForLine("\x01never", deadline);
    if (Clock::now() >= deadline) Signal(SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    reaped_ = true;
    if (Clock::now() >= deadline) return -1;
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return -1;
  }

 private:
  pid_t pid_ = -1;
  int out_ = -1;
  bool reaped_ = false;
};

DistributedOptions RankZeroOptions(int port) {
  DistributedOptions options;
  options.rank = 0;
  options.world_size = 2;
  options.master_addr = "127.0.0.1";
  options.master_port = port;
  options.job_id = "ddp-test";
  options.attempt = 3;
  options.collective_timeout = kTestTimeout;
  options.rendezvous_timeout = std::chrono::seconds(60);
  return options;
}

// ---- The training both ranks run -------------------------------------------------------------

constexpr int64_t kLocalBatch = 4;
constexpr int kSteps = 3;

torch::nn::Sequential TinyMlp() {
  torch::manual_seed(11);
  return torch::nn::Sequential(torch::nn::Linear(6, 16), torch::nn::Tanh(),
                               torch::nn::Linear(16, 3));
}

// The global batch of `step`: identical on every rank.
std::pair<torch::Tensor, torch::Tensor> GlobalBatch(int step, int64_t size) {
  torch::Generator gen = at::detail::createCPUGenerator(1000 + step);
  torch::Tensor x = torch::randn({size, 6}, gen);
  torch::Tensor y = torch::randint(0, 3, {size}, gen);
  return {x, y};
}

// Trains `kSteps` steps with `optimizer_name` on this rank's share of each global batch
// (2 * kLocalBatch samples; rank r of W takes rows [r * n / W, (r + 1) * n / W)) and returns the
// flattened final weights.
torch::Tensor Train(DistributedContext& dist, const std::string& optimizer_name) {
  torch::nn::Sequential model = TinyMlp();
  if (dist.rank() != 0) {
    // Start from different weights: BroadcastModuleState must make rank 0's the common start.
    torch::NoGradGuard no_grad;
    for (torch::Tensor& p : model->parameters()) p.add_(1.0);
  }
  EXPECT_TRUE(BroadcastModuleState(dist, *model).ok());
  absl::StatusOr<GradientAllReducer> reducer = GradientAllReducer::Create(
      &dist, model->parameters(), GradientAllReducerOptions{/*bucket_bytes=*/256});
  EXPECT_TRUE(reducer.ok()) << reducer.status();
  if (dist.world_size() > 1) {
    EXPECT_GT(reducer->num_buckets(), 1);  // small buckets: several
  }
  std::unique_ptr<torch::optim::Optimizer> optimizer;
  if (optimizer_name == "sgd") {
    optimizer = std::make_unique<torch::optim::SGD>(model->parameters(),
                                                    torch::optim::SGDOptions(0.1).momentum(0.9));
  } else {
    optimizer = std::make_unique<torch::optim::AdamW>(
        model->parameters(), torch::optim::AdamWOptions(1e-2).weight_decay(0.05));
  }
  const int64_t global = 2 * kLocalBatch;
  const int64_t local = global / dist.world_size();
  for (int step = 0; step < kSteps; ++step) {
    auto [x, y] = GlobalBatch(step, global);
    x = x.narrow(0, dist.rank() * local, local);
    y = y.narrow(0, dist.rank() * local, local);
    optimizer->zero_grad();
    torch::nn::functional::cross_entropy(model->forward(x), y).backward();
    const absl::Status reduced = reducer->AllReduce();
    EXPECT_TRUE(reduced.ok()) << reduced;
    optimizer->step();
  }
  std::vector<torch::Tensor> flat;
  for (const torch::Tensor& p : model->parameters()) flat.push_back(p.detach().reshape({-1}));
  return torch::cat(flat);
}

// Both ranks: train with 2 ranks, then compare with 1 rank x the global batch (a world-1 context,
// so its reducer is the identity). Returns the largest difference.
double TrainAndCompare(DistributedContext& dist, const std::string& optimizer_name) {
  const torch::Tensor distributed = Train(dist, optimizer_name);
  absl::StatusOr<std::unique_ptr<DistributedContext>> single =
      DistributedContext::Create(DistributedOptions{});
  EXPECT_TRUE(single.ok()) << single.status();
  const torch::Tensor reference = Train(**single, optimizer_name);
  const double diff = (distributed - reference).abs().max().item<double>();
  std::printf("rank %d %s: max |2 ranks x %ld - 1 rank x %ld| = %.3g\n", dist.rank(),
              optimizer_name.c_str(), static_cast<long>(kLocalBatch),
              static_cast<long>(2 * kLocalBatch), diff);
  std::fflush(stdout);
  EXPECT_LE(diff, 1e-4) << optimizer_name;
  // Training moved the weights, so matching them is not vacuous.
  std::vector<torch::Tensor> initial;
  for (const torch::Tensor& p : TinyMlp()->parameters())
    initial.push_back(p.detach().reshape({-1}));
  EXPECT_GT((reference - torch::cat(initial)).abs().max().item<double>(), 1e-3);
  return diff;
}

void RunTrainingRank(DistributedContext& dist) {
  TrainAndCompare(dist, "sgd");
  TrainAndCompare(dist, "adamw");
}

// Rank r contributes {r, 10 (r + 1), -3}: the means are {0.5, 15, -3}; then a broadcast of
// rank 0's tensor and a barrier.
void RunMetricsRank(DistributedContext& dist) {
  const double r = dist.rank();
  absl::StatusOr<std::vector<double>> mean = dist.AllReduceMean({r, 10 * (r + 1), -3});
  ASSERT_TRUE(mean.ok()) << mean.status();
  EXPECT_THAT(*mean, ::testing::ElementsAre(0.5, 15.0, -3.0));
  std::vector<torch::Tensor> t{torch::full({5}, r + 7.0)};
  ASSERT_TRUE(dist.Broadcast(t).ok());
  EXPECT_TRUE(torch::equal(t[0], torch::full({5}, 7.0)));
  std::vector<torch::Tensor> sum{torch::arange(4, torch::kFloat32) * (r + 1)};
  ASSERT_TRUE(dist.AllReduceSum(sum).ok());
  EXPECT_TRUE(torch::equal(sum[0], torch::arange(4, torch::kFloat32) * 3));
  EXPECT_TRUE(dist.Barrier().ok());
}

// Joins, proves the group works with one collective, says READY, then waits to be killed.
void RunIdleRank(DistributedContext& dist) {
  std::vector<torch::Tensor> t{torch::ones({3})};
  ASSERT_TRUE(dist.AllReduceSum(t).ok());
  std::printf("READY\n");
  std::fflush(stdout);
  for (;;) ::pause();
}

// ---- Rank 1 (child) --------------------------------------------------------------------------

TEST(DistributedRankTest, Rank1) {
  const char* role = std::getenv(kRoleEnv);
  if (role == nullptr) GTEST_SKIP() << "runs only as rank 1 of a two-rank test";
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive rank 0
  torch::set_num_threads(1);
  absl::StatusOr<DistributedOptions> options = DistributedOptionsFromEnv();
  ASSERT_TRUE(options.ok()) << options.status();
  ASSERT_EQ(options->rank, 1);
  options->collective_timeout = std::chrono::milliseconds(std::atoll(std::getenv(kTimeoutEnv)));
  options->rendezvous_timeout = std::chrono::seconds(60);
  const std::string r(role);
  if (r == "stale") {
    // A rank left over from the previous attempt reaches the same store but must not join.
    options->attempt -= 1;
    options->rendezvous_timeout = kTestTimeout;
    EXPECT_EQ(DistributedContext::Create(*options).status().code(), absl::StatusCode::kUnavailable);
    return;
  }
  absl::StatusOr<std::unique_ptr<DistributedContext>> dist = DistributedContext::Create(*options);
  ASSERT_TRUE(dist.ok()) << dist.status();
  if (r == "train") RunTrainingRank(**dist);
  if (r == "metrics") RunMetricsRank(**dist);
  if (r == "idle") RunIdleRank(**dist);
}

// ---- Rank 0 (this process) -------------------------------------------------------------------

class TwoRankTest : public ::testing::Test {
 protected:
  void SetUp() override { torch::set_num_threads(1); }

  // Starts rank 1 with `role` and joins as rank 0.
  std::unique_ptr<DistributedContext> Join(const std::string& role) {
    const int port = FreePort();
    peer_ = std::make_unique<RankProcess>(role, port);
    EXPECT_TRUE(peer_->started());
    absl::StatusOr<std::unique_ptr<DistributedContext>> dist =
        DistributedContext::Create(RankZeroOptions(port));
    EXPECT_TRUE(dist.ok()) << dist.status();
    return dist.ok() ? *std::move(dist) : nullptr;
  }

  std::unique_ptr<RankProcess> peer_;
};

TEST_F(TwoRankTest, TwoRanksWithBatchBMatchOneRankWithBatch2B) {
  std::unique_ptr<DistributedContext> dist = Join("train");
  ASSERT_NE(dist, nullptr);
  EXPECT_EQ(dist->rank(), 0);
  EXPECT_TRUE(dist->is_distributed());
  RunTrainingRank(*dist);
  EXPECT_EQ(peer_->Wait(), 0) << "rank 1 failed; its output is above";
}

TEST_F(TwoRankTest, MetricsAreAveragedAndBroadcastComesFromRankZero) {
  std::unique_ptr<DistributedContext> dist = Join("metrics");
  ASSERT_NE(dist, nullptr);
  RunMetricsRank(*dist);
  EXPECT_EQ(peer_->Wait(), 0) << "rank 1 failed; its output is above";
}

// Kills (SIGKILL) or freezes (SIGSTOP) rank 1 after the group is up; rank 0's next collective must
// return Unavailable naming the operation and rank, within the collective timeout plus slack
// (socket teardown makes a kill fail at once; a frozen peer fails at the timeout).
void ExpectSurvivorFails(RankProcess& peer, DistributedContext& dist, int signal) {
  std::vector<torch::Tensor> t{torch::ones({3})};
  ASSERT_TRUE(dist.AllReduceSum(t).ok());
  ASSERT_TRUE(peer.WaitForLine("READY", Clock::now() + kChildDeadline));
  peer.Signal(signal);
  if (signal == SIGKILL) {
    EXPECT_EQ(peer.Wait(), 128 + SIGKILL);
  }
  const Clock::time_point start = Clock::now();
  std::vector<torch::Tensor> u{torch::ones({1000})};
  const absl::Status status = dist.AllReduceSum(u);
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  std::printf("rank 0 failed %.2f s after rank 1 got signal %d (timeout %.1f s): %s\n", seconds,
              signal, kTestTimeout.count() / 1000.0, status.ToString().c_str());
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr("rank 0: allreduce"));
  EXPECT_LT(seconds, std::chrono::duration<double>(kTestTimeout).count() + 20.0);
  // Further collectives fail too rather than hang.
  const Clock::time_point again = Clock::now();
  EXPECT_FALSE(dist.Barrier().ok());
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - again).count(),
            std::chrono::duration<double>(kTestTimeout).count() + 20.0);
  if (signal != SIGKILL) peer.Signal(SIGKILL);
}

TEST_F(TwoRankTest, KilledPeerFailsTheNextCollectiveQuickly) {
  std::unique_ptr<DistributedContext> dist = Join("idle");
  ASSERT_NE(dist, nullptr);
  ExpectSurvivorFails(*peer_, *dist, SIGKILL);
}

TEST_F(TwoRankTest, FrozenPeerFailsTheCollectiveAtTheTimeout) {
  std::unique_ptr<DistributedContext> dist = Join("idle");
  ASSERT_NE(dist, nullptr);
  ExpectSurvivorFails(*peer_, *dist, SIGSTOP);
}

TEST_F(TwoRankTest, RanksOfDifferentAttemptsNeverFormAGroup) {
  const int port = FreePort();
  peer_ = std::make_unique<RankProcess>("stale", port);
  ASSERT_TRUE(peer_->started());
  DistributedOptions options = RankZeroOptions(port);
  options.rendezvous_timeout = kTestTimeout;
  const Clock::time_point start = Clock::now();
  const absl::Status status = DistributedContext::Create(options).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr("rank 0"));
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - start).count(),
            std::chrono::duration<double>(kTestTimeout).count() + 20.0);
  EXPECT_EQ(peer_->Wait(), 0) << "rank 1 failed; its output is above";
}

// ---- One process ------------------------------------------------------------------------------

TEST(DistributedTest, WithoutEnvironmentIsOneProcessAndCollectivesAreIdentities) {
  absl::StatusOr<DistributedOptions> options =
      DistributedOptionsFromEnv([&](const char*) { return std::optional<std::string>(); });
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->world_size, 1);
  EXPECT_EQ(options->rank, 0);
  absl::StatusOr<std::unique_ptr<DistributedContext>> dist = DistributedContext::Create(*options);
  ASSERT_TRUE(dist.ok()) << dist.status();
  EXPECT_FALSE((*dist)->is_distributed());
  EXPECT_TRUE((*dist)->is_main());
  absl::StatusOr<std::vector<double>> mean = (*dist)->AllReduceMean({1.5, -2});
  ASSERT_TRUE(mean.ok());
  EXPECT_THAT(*mean, ::testing::ElementsAre(1.5, -2));
  std::vector<torch::Tensor> t{torch::arange(3, torch::kFloat32)};
  ASSERT_TRUE((*dist)->AllReduceSum(t).ok());
  EXPECT_TRUE(torch::equal(t[0], torch::arange(3, torch::kFloat32)));
  ASSERT_TRUE((*dist)->Broadcast(t).ok());
  EXPECT_TRUE((*dist)->Barrier().ok());

  torch::nn::Linear layer(3, 2);
  layer(torch::ones({4, 3})).sum().backward();
  const torch::Tensor grad = layer->weight.grad().clone();
  absl::StatusOr<GradientAllReducer> reducer =
      GradientAllReducer::Create(dist->get(), layer->parameters());
  ASSERT_TRUE(reducer.ok()) << reducer.status();
  EXPECT_EQ(reducer->num_buckets(), 1);
  ASSERT_TRUE(reducer->AllReduce().ok());
  EXPECT_TRUE(torch::equal(layer->weight.grad(), grad));
  EXPECT_TRUE(BroadcastModuleState(**dist, *layer).ok());
}

TEST(DistributedTest, EnvironmentIsParsedLikeTorchrun) {
  std::map<std::string, std::string> env = {{"WORLD_SIZE", "4"},      {"RANK", "2"},
                                            {"LOCAL_RANK", "0"},      {"MASTER_ADDR", "node-a"},
                                            {"MASTER_PORT", "29511"}, {"PECO_JOB_ID", "job-7"},
                                            {"PECO_ATTEMPT", "2"}};
  auto lookup = [&](const char* name) -> std::optional<std::string> {
    auto it = env.find(name);
    if (it == env.end()) return std::nullopt;
    return it->second;
  };
  absl::StatusOr<DistributedOptions> options = DistributedOptionsFromEnv(lookup);
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->world_size, 4);
  EXPECT_EQ(options->rank, 2);
  EXPECT_EQ(options->local_rank, 0);
  EXPECT_EQ(options->master_addr, "node-a");
  EXPECT_EQ(options->master_port, 29511);
  EXPECT_EQ(options->job_id, "job-7");
  EXPECT_EQ(options->attempt, 2);
  EXPECT_TRUE(options->Validate().ok());

  struct Bad {
    std::string variable, value, message;
  };
  for (const Bad& bad : std::vector<Bad>{{"RANK", "4", "environment RANK"},
                                         {"RANK", "x", "environment RANK"},
                                         {"WORLD_SIZE", "0", "environment WORLD_SIZE"},
                                         {"MASTER_PORT", "70000", "environment MASTER_PORT"},
                                         {"PECO_ATTEMPT", "-1", "environment PECO_ATTEMPT"},
                                         {"RANK", "", "environment RANK"}}) {
    std::map<std::string, std::string> saved = env;
    env[bad.variable] = bad.value;
    const absl::Status status = DistributedOptionsFromEnv(lookup).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << bad.variable << bad.value;
    EXPECT_THAT(std::string(status.message()), HasSubstr(bad.message));
    env = saved;
  }
  for (const char* required : {"RANK", "MASTER_ADDR", "MASTER_PORT"}) {
    std::map<std::string, std::string> saved = env;
    env.erase(required);
    const absl::Status status = DistributedOptionsFromEnv(lookup).status();
    EXPECT_THAT(std::string(status.message()), HasSubstr(absl::StrCat("environment ", required)));
    env = saved;
  }
}

TEST(DistributedTest, BadOptionsNameTheField) {
  auto expect_field = [](DistributedOptions o, const char* field) {
    const absl::Status status = o.Validate();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << field;
    EXPECT_THAT(std::string(status.message()), HasSubstr(field));
    EXPECT_EQ(DistributedContext::Create(o).status().code(), absl::StatusCode::kInvalidArgument);
  };
  DistributedOptions o;
  o.world_size = 0;
  expect_field(o, "distributed.world_size");
  o = {};
  o.world_size = 2;
  o.rank = 2;
  expect_field(o, "distributed.rank");
  o = {};
  o.collective_timeout = std::chrono::milliseconds(0);
  expect_field(o, "distributed.collective_timeout");
  o = {};
  o.world_size = 2;
  o.master_port = 0;
  expect_field(o, "distributed.master_port");
  EXPECT_THAT(std::string(GradientAllReducerOptions{0}.Validate().message()),
              HasSubstr("distributed.bucket_bytes"));
}

// bench/gpu/run runs this on a GPU machine: a real ProcessGroupNCCL of one rank sums, broadcasts
// and synchronises CUDA tensors in place.
TEST(DistributedTest, NcclGroupOfOneRunsCollectivesOnTheGpu) {
  if (!BuiltWithNccl()) GTEST_SKIP() << "this build has no NCCL";
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  DistributedOptions o = RankZeroOptions(FreePort());
  o.world_size = 1;
  o.device = torch::Device(torch::kCUDA, 0);
  absl::StatusOr<std::unique_ptr<CollectiveGroup>> group = ConnectC10dGroup(o);
  ASSERT_TRUE(group.ok()) << group.status();
  std::vector<torch::Tensor> tensors = {
      torch::arange(6, torch::TensorOptions().dtype(torch::kFloat32).device(o.device)),
      torch::full({3}, 2.5, torch::TensorOptions().dtype(torch::kFloat64).device(o.device))};
  const std::vector<torch::Tensor> before = {tensors[0].clone(), tensors[1].clone()};
  ASSERT_TRUE((*group)->AllReduceSum(tensors).ok());
  EXPECT_TRUE(torch::equal(tensors[0], before[0]));
  EXPECT_TRUE(torch::equal(tensors[1], before[1]));
  EXPECT_TRUE(tensors[0].is_cuda());
  ASSERT_TRUE((*group)->Broadcast(tensors, /*root=*/0).ok());
  EXPECT_TRUE(torch::equal(tensors[0], before[0]));
  EXPECT_TRUE((*group)->Barrier().ok());
}

TEST(DistributedTest, CudaWithoutNcclIsRefusedBeforeTheStore) {
  if (BuiltWithNccl()) GTEST_SKIP() << "this build has NCCL";
  DistributedOptions o = RankZeroOptions(FreePort());
  o.device = torch::Device(torch::kCUDA, 0);
  const Clock::time_point start = Clock::now();
  const absl::Status status = DistributedContext::Create(o).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr("distributed.device"));
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - start).count(), 5.0);
}

}  // namespace
}  // namespace peco::trainer
