#include "tests/e2e/cluster.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "common/file_util.h"

namespace peco::e2e {

int FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  const int port = ntohs(addr.sin_port);
  ::close(fd);
  return port;
}

namespace {

std::string ReadTrimmed(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFileToString(path);
  return text.ok() ? std::string(absl::StripAsciiWhitespace(*text)) : "";
}

// A rendezvous port range per cluster so parallel tests do not collide.
int NextPortBase() {
  static int base = 20000 + (::getpid() % 200) * 100;
  base += 10;
  return base;
}

}  // namespace

Daemon::Daemon(std::unique_ptr<Process> process, std::string log_path)
    : process_(std::move(process)), log_path_(std::move(log_path)) {
  const int fd = process_->stdout_fd();
  drain_ = std::thread([fd] {
    char buffer[4096];
    while (::read(fd, buffer, sizeof(buffer)) > 0) {
    }
  });
}

Daemon::~Daemon() {
  if (!reaped_) {
    process_->Signal(SIGKILL).IgnoreError();
    process_->Wait().IgnoreError();
  }
  // Only the daemon holds its stdout's write end (children get their own pipes), so the drain
  // thread sees end of file once the daemon is gone.
  if (drain_.joinable()) drain_.join();
}

void Daemon::SignalDaemonOnly(int signal) { ::kill(process_->pid(), signal); }

ExitStatus Daemon::Stop() {
  if (!reaped_) SignalDaemonOnly(SIGTERM);
  return Wait();
}

ExitStatus Daemon::Wait() {
  if (!reaped_) {
    absl::StatusOr<ExitStatus> status = process_->Wait();
    exit_status_ = status.ok() ? *status : ExitStatus::Exited(-1);
    reaped_ = true;
  }
  return exit_status_;
}

void Daemon::Kill() {
  if (!reaped_) SignalDaemonOnly(SIGKILL);
  Wait();
}

bool Daemon::running() {
  if (reaped_) return false;
  absl::StatusOr<std::optional<ExitStatus>> status = process_->Poll();
  if (status.ok() && status->has_value()) {
    exit_status_ = **status;
    reaped_ = true;
  }
  return !reaped_;
}

Cluster::Cluster() {
  std::string pattern = absl::StrCat(::testing::TempDir(), "/peco_e2e_XXXXXX");
  root_ = ::mkdtemp(pattern.data()) != nullptr ? pattern : "/tmp/peco_e2e";
  data_dir_ = root_ + "/coordinator";
  coordinator_port_ = FreePort();
}

std::string JobIdIn(const std::string& text) {
  for (absl::string_view token : absl::StrSplit(text, absl::ByAnyChar(" \t\n\",:{}"))) {
    if (absl::StartsWith(token, "job-")) return std::string(token);
  }
  return "";
}

Cluster::~Cluster() {
  // Workers first (they stop their trainers), then the coordinator.
  for (auto& worker : workers_) {
    if (worker && worker->running()) worker->Stop();
  }
  if (coordinator_ && coordinator_->running()) coordinator_->Stop();
}

void Cluster::StartCoordinator(const std::vector<std::string>& extra_flags) {
  const std::string log = absl::StrCat(root_, "/coordinator-", coordinator_starts_++, ".log");
  LaunchSpec spec;
  spec.argv = {PECO_COORDINATOR_BINARY,
               "--data_dir",
               data_dir_,
               "--listen",
               absl::StrCat("127.0.0.1:", coordinator_port_),
               "--metrics_listen",
               "127.0.0.1:0",
               "--trainer",
               PECO_E2E_TRAIN_BINARY,
               "--heartbeat_interval",
               "500ms",
               "--worker_timeout",
               "5s",
               "--cancel_grace",
               "60s"};
  spec.argv.insert(spec.argv.end(), extra_flags.begin(), extra_flags.end());
  spec.stderr_path = log;
  PosixProcessLauncher launcher;
  absl::StatusOr<std::unique_ptr<Process>> process = launcher.Launch(spec);
  if (!process.ok()) {
    std::cerr << "cannot start the coordinator: " << process.status() << "\n";
    return;
  }
  coordinator_ = std::make_unique<Daemon>(std::move(*process), log);
  Connect();
  // Wait until it answers an authenticated call.
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  while (absl::Now() < deadline) {
    user_token_ = ReadTrimmed(data_dir_ + "/user.token");
    worker_token_ = ReadTrimmed(data_dir_ + "/worker.token");
    if (!user_token_.empty()) {
      v1::ListWorkersRequest request;
      v1::ListWorkersResponse response;
      if (jobs_->ListWorkers(UserContext(absl::Seconds(2)).get(), request, &response).ok()) {
        return;
      }
    }
    if (!coordinator_->running()) break;
    absl::SleepFor(absl::Milliseconds(50));  // polling a condition, not timing
  }
  std::cerr << "the coordinator did not come up\n";
  DumpLogs();
}

void Cluster::UseTls(const std::string& ca_path) {
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = ReadFileToString(ca_path).value_or("");
  credentials_ = grpc::SslCredentials(ssl);
}

void Cluster::KillCoordinator() { coordinator_->Kill(); }

void Cluster::Connect() {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(16 << 20);
  channel_ =
      grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", coordinator_port_), credentials_, args);
  jobs_ = v1::JobService::NewStub(channel_);
  workers_api_ = v1::WorkerService::NewStub(channel_);
}

std::unique_ptr<grpc::ClientContext> Cluster::UserContext(absl::Duration timeout) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->AddMetadata("authorization", absl::StrCat("Bearer ", user_token_));
  context->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  return context;
}

std::unique_ptr<grpc::ClientContext> Cluster::WorkerContext(absl::Duration timeout) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->AddMetadata("authorization", absl::StrCat("Bearer ", worker_token_));
  context->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  return context;
}

int Cluster::StartWorker(int cpu_slots, const std::vector<std::string>& extra_flags) {
  const int index = static_cast<int>(workers_.size());
  const std::string dir = absl::StrCat(root_, "/worker-", index);
  const std::string log = absl::StrCat(root_, "/worker-", index, ".log");
  const int base = NextPortBase();
  LaunchSpec spec;
  spec.argv = {PECO_WORKER_BINARY,
               "--coordinator_data_dir",
               data_dir_,
               "--coordinator",
               absl::StrCat("127.0.0.1:", coordinator_port_),
               "--work_dir",
               dir,
               "--cpu_slots",
               std::to_string(cpu_slots),
               "--trainer",
               PECO_E2E_TRAIN_BINARY,
               "--ports",
               absl::StrCat(base, "-", base + 9),
               "--listen",
               "127.0.0.1:0",
               "--metrics_listen",
               "127.0.0.1:0"};
  spec.argv.insert(spec.argv.end(), extra_flags.begin(), extra_flags.end());
  spec.stderr_path = log;
  PosixProcessLauncher launcher;
  absl::StatusOr<std::unique_ptr<Process>> process = launcher.Launch(spec);
  if (!process.ok()) {
    std::cerr << "cannot start a worker: " << process.status() << "\n";
    workers_.push_back(nullptr);
  } else {
    workers_.push_back(std::make_unique<Daemon>(std::move(*process), log));
  }
  worker_dirs_.push_back(dir);
  return index;
}

std::string Cluster::WorkerId(int index) { return ReadTrimmed(worker_dirs_[index] + "/worker.id"); }

bool Cluster::WaitForWorkers(int count, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    v1::ListWorkersRequest request;
    v1::ListWorkersResponse response;
    if (jobs_->ListWorkers(UserContext().get(), request, &response).ok()) {
      int alive = 0;
      for (const v1::WorkerInfo& info : response.workers()) {
        alive += info.state() == v1::WORKER_STATE_ALIVE;
      }
      if (alive >= count) return true;
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  return false;
}

CommandResult Cluster::Peco(const std::vector<std::string>& args) {
  const std::string out_path = absl::StrCat(root_, "/cli.out");
  const std::string err_path = absl::StrCat(root_, "/cli.err");
  std::string command = absl::StrCat("'", PECO_CLI_BINARY, "' --data_dir '", data_dir_, "'");
  for (const std::string& arg : args) absl::StrAppend(&command, " '", arg, "'");
  absl::StrAppend(&command, " >'", out_path, "' 2>'", err_path, "'");
  const int status = std::system(command.c_str());
  CommandResult result;
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  result.output = ReadFileToString(out_path).value_or("");
  result.error = ReadFileToString(err_path).value_or("");
  return result;
}

absl::StatusOr<v1::GetJobResponse> Cluster::GetJob(const std::string& job_id) {
  v1::GetJobRequest request;
  request.set_job_id(job_id);
  v1::GetJobResponse response;
  grpc::Status status = jobs_->GetJob(UserContext().get(), request, &response);
  if (!status.ok()) {
    return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
  }
  return response;
}

absl::StatusOr<std::vector<v1::CheckpointInfo>> Cluster::Checkpoints(const std::string& job_id) {
  v1::ListCheckpointsRequest request;
  request.set_job_id(job_id);
  v1::ListCheckpointsResponse response;
  grpc::Status status = jobs_->ListCheckpoints(UserContext().get(), request, &response);
  if (!status.ok()) {
    return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
  }
  return std::vector<v1::CheckpointInfo>(response.checkpoints().begin(),
                                         response.checkpoints().end());
}

absl::StatusOr<std::vector<v1::WatchJobEvent>> Cluster::History(const std::string& job_id) {
  v1::WatchJobRequest request;
  request.set_job_id(job_id);
  request.set_include_history(true);
  auto context = UserContext(absl::Seconds(60));
  std::unique_ptr<grpc::ClientReader<v1::WatchJobEvent>> reader =
      jobs_->WatchJob(context.get(), request);
  std::vector<v1::WatchJobEvent> events;
  v1::WatchJobEvent event;
  while (reader->Read(&event)) events.push_back(event);
  grpc::Status status = reader->Finish();
  if (!status.ok()) {
    return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
  }
  return events;
}

absl::StatusOr<v1::GetJobResponse> Cluster::WaitForJob(
    const std::string& job_id, const std::function<bool(const v1::GetJobResponse&)>& predicate,
    absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  absl::Status last = absl::DeadlineExceededError("no answer");
  while (absl::Now() < deadline) {
    absl::StatusOr<v1::GetJobResponse> job = GetJob(job_id);
    if (job.ok() && predicate(*job)) return job;
    if (!job.ok()) last = job.status();
    absl::SleepFor(absl::Milliseconds(100));
  }
  return absl::DeadlineExceededError(
      absl::StrCat("waiting for ", job_id, " timed out (last error: ", last.ToString(), ")"));
}

absl::StatusOr<v1::GetJobResponse> Cluster::WaitForState(const std::string& job_id,
                                                         v1::JobState state,
                                                         absl::Duration timeout) {
  return WaitForJob(
      job_id, [state](const v1::GetJobResponse& job) { return job.job().state() == state; },
      timeout);
}

std::string Cluster::WriteSpec(const std::string& name, int max_steps, int checkpoint_every,
                               const std::string& extra_yaml) {
  const std::string path = absl::StrCat(root_, "/", name, ".yaml");
  std::ofstream(path) << absl::StrCat(
      R"(kind: tokenizer
seed: 5
threads: 1
data: {source: fashion_mnist, path: /usr/share/datasets/fashion-mnist, image_size: 16,
       batch_size: 8, num_workers: 1, prefetch: 2}
model: {ch: 32, ch_mult: [1, 2], num_res_blocks: 1, attn_resolutions: [], z_channels: 16,
        n_embed: 32, embed_dim: 8}
loss:
  perceptual_weight: 0.1
  perceptual: {seed: 3, blocks: [1, 2],
               extractor: {img_size: 16, patch_size: 4, embed_dim: 16, depth: 2, num_heads: 2}}
optim: {lr: 1.0e-3, warmup_steps: 2}
eval: {max_images: 64}
train: {max_steps: )",
      max_steps, ", log_every: 1, checkpoint_every: ", checkpoint_every, R"(, keep_checkpoints: 2}
job:
  name: )",
      name, R"(
  max_restarts: 3
)",
      extra_yaml);
  return path;
}

std::string HttpGet(const std::string& address, const std::string& target) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos) return "";
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(std::stoi(address.substr(colon + 1))));
  ::inet_pton(AF_INET, address.substr(0, colon).c_str(), &addr.sin_addr);
  std::string response;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    const std::string request =
        absl::StrCat("GET ", target, " HTTP/1.0\r\nHost: localhost\r\n\r\n");
    if (::write(fd, request.data(), request.size()) == static_cast<ssize_t>(request.size())) {
      char buffer[4096];
      ssize_t n;
      while ((n = ::read(fd, buffer, sizeof(buffer))) > 0) response.append(buffer, n);
    }
  }
  ::close(fd);
  const size_t body = response.find("\r\n\r\n");
  return body == std::string::npos ? "" : response.substr(body + 4);
}

std::string Cluster::CoordinatorMetricsAddress() {
  return ReadTrimmed(data_dir_ + "/metrics.addr");
}

std::string Cluster::WorkerMetricsAddress(int index) {
  // The worker logs "metrics on http://HOST:PORT/metrics" once it serves them.
  const std::string log = ReadFileToString(workers_[index]->log_path()).value_or("");
  const std::string prefix = "metrics on http://";
  const size_t at = log.find(prefix);
  if (at == std::string::npos) return "";
  const size_t start = at + prefix.size();
  return log.substr(start, log.find("/metrics", start) - start);
}

std::string Cluster::CoordinatorMetrics() {
  return HttpGet(CoordinatorMetricsAddress(), "/metrics");
}

std::string Cluster::WorkerMetrics(int index) {
  return HttpGet(WorkerMetricsAddress(index), "/metrics");
}

void Cluster::DumpLogs() {
  auto dump = [](const std::string& path) {
    std::cerr << "===== " << path << "\n" << ReadFileToString(path).value_or("(none)") << "\n";
  };
  for (int i = 0; i < coordinator_starts_; ++i) {
    dump(absl::StrCat(root_, "/coordinator-", i, ".log"));
  }
  for (size_t i = 0; i < workers_.size(); ++i) dump(absl::StrCat(root_, "/worker-", i, ".log"));
}

}  // namespace peco::e2e
