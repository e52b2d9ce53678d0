// peco-coordinator: the gRPC control plane (docs/SERVICE.md).
//
//   peco-coordinator [--data_dir DIR] [--listen 127.0.0.1:7450] [--metrics_listen 127.0.0.1:7451]
//                    [--trainer PATH] [--allowed_roots DIR,DIR] [--worker_timeout 15s] ...
//
// State lives in --data_dir (SQLite, checkpoints, tokens); the address it listens on is written
// to <data_dir>/coordinator.addr. SIGTERM or SIGINT shuts it down; SIGKILL loses nothing it
// acknowledged. Exit codes: 0 after a clean shutdown, 2 for bad flags, 1 when it cannot start.
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/build_info.h"
#include "common/clock.h"
#include "common/file_util.h"
#include "common/rpc_fault_plan.h"
#include "common/stack_dump.h"
#include "common/tls_files.h"
#include "coordinator/auth.h"
#include "coordinator/checkpoint_file_store.h"
#include "coordinator/coordinator.h"
#include "coordinator/coordinator_metrics.h"
#include "coordinator/job_event_hub.h"
#include "coordinator/listen_address.h"
#include "coordinator/rpc_fault_interceptor.h"
#include "coordinator/rpc_metrics_interceptor.h"
#include "coordinator/rpc_services.h"
#include "coordinator/spec_validator.h"
#include "coordinator/sqlite_job_store.h"
#include "prometheus/exposer.h"

ABSL_FLAG(std::string, data_dir, "",
          "State directory (default: $PECO_DATA_DIR, else ~/.local/share/peco)");
ABSL_FLAG(std::string, listen, "127.0.0.1:7450",
          "gRPC address; port 0 picks a free port (written to <data_dir>/coordinator.addr)");
ABSL_FLAG(std::string, metrics_listen, "127.0.0.1:7451",
          "Prometheus /metrics address; empty disables it");
ABSL_FLAG(std::string, trainer, "",
          "peco-train used to validate submitted configs (default: next to this binary, else "
          "PATH)");
ABSL_FLAG(int, validators, 2,
          "peco-train validate --serve processes that check submitted configs (started on demand)");
ABSL_FLAG(absl::Duration, validate_timeout, absl::Seconds(10),
          "How long one config check may take before its validator is replaced");
ABSL_FLAG(std::vector<std::string>, allowed_roots, {"/usr/share/datasets"},
          "Directories a job may read data and weights from (comma-separated)");
ABSL_FLAG(absl::Duration, heartbeat_interval, absl::Seconds(2), "Worker heartbeat interval");
ABSL_FLAG(absl::Duration, worker_timeout, absl::Seconds(15),
          "A worker silent for longer is lost and its jobs restart elsewhere");
ABSL_FLAG(absl::Duration, cancel_grace, absl::Seconds(60),
          "Time a cancelled trainer gets to write its final checkpoint");
ABSL_FLAG(int, keep_checkpoints, 3, "Checkpoints kept per job besides the final ones");
ABSL_FLAG(int, default_max_restarts, 5, "max_restarts of jobs that do not set it");
ABSL_FLAG(int, max_worker_gpus, 64, "Most GPUs one worker may register");
ABSL_FLAG(int, max_worker_cpu_slots, 4096, "Most CPU slots one worker may register");
ABSL_FLAG(int, max_pending_jobs_per_user, 1000,
          "Most jobs one user (not an admin) may have queued or waiting; 0 = no limit");
ABSL_FLAG(absl::Duration, reservation_after, absl::Minutes(10),
          "How long a big job may be overtaken by smaller ones before it reserves devices");
ABSL_FLAG(int, max_message_bytes, 8 << 20, "Largest gRPC message accepted");
ABSL_FLAG(int64_t, max_checkpoint_bytes, int64_t{256} << 30,
          "Most bytes one uploaded checkpoint may hold");
ABSL_FLAG(int, max_checkpoint_files, 4096, "Most files one uploaded checkpoint may hold");
ABSL_FLAG(int64_t, min_free_disk_bytes, int64_t{1} << 30,
          "Bytes that must stay free on the data directory's disk; uploads that would leave less "
          "are refused");
ABSL_FLAG(int, max_open_uploads, 64, "Most checkpoint uploads open at once");
ABSL_FLAG(absl::Duration, upload_idle_timeout, absl::Minutes(10),
          "A checkpoint upload that receives nothing for this long is aborted");
ABSL_FLAG(int64_t, max_log_bytes, int64_t{64} << 20,
          "Trainer log bytes kept per job, attempt and rank (<data_dir>/logs); the rest is "
          "dropped with a note");
ABSL_FLAG(std::string, tls_cert, "", "PEM certificate chain; with --tls_key enables TLS");
ABSL_FLAG(std::string, tls_key, "", "PEM private key for --tls_cert");
ABSL_FLAG(std::string, tls_client_ca, "",
          "PEM CA certificates; with TLS on, WorkerService calls must present a client "
          "certificate signed by one of them (mutual TLS). The CLI's certificate is optional.");
ABSL_FLAG(std::string, rpc_faults, "",
          "FAULT INJECTION for reliability tests: lose chosen calls, e.g. "
          "'SubmitJob:response:2,Heartbeat:request:1' (docs/RELIABILITY.md). Off when empty.");
ABSL_FLAG(std::string, name, "", "tokens issue|revoke: the token's name (who or what holds it)");
ABSL_FLAG(std::string, role, "user",
          "tokens issue: user (JobService, own jobs), admin (JobService, every job) or worker "
          "(WorkerService)");
ABSL_FLAG(absl::Duration, ttl, absl::Hours(24 * 90),
          "tokens issue: how long the token is valid ('inf': until revoked)");

namespace peco::coordinator {
namespace {

void Log(const std::string& line) { std::cerr << "peco-coordinator: " << line << std::endl; }

std::string DefaultDataDir() {
  if (const char* env = std::getenv("PECO_DATA_DIR"); env != nullptr && *env != '\0') return env;
  if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0') {
    return absl::StrCat(home, "/.local/share/peco");
  }
  return "peco-data";
}

std::string DefaultTrainer() {
  std::error_code error;
  std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", error);
  if (!error) {
    std::filesystem::path sibling = self.parent_path() / "peco-train";
    if (std::filesystem::exists(sibling, error)) return sibling.string();
    // Build trees keep the trainer in trainer/ next to coordinator/.
    sibling = self.parent_path().parent_path() / "trainer" / "peco-train";
    if (std::filesystem::exists(sibling, error)) return sibling.string();
  }
  return "peco-train";
}

// `peco-coordinator tokens issue|revoke|list`: manages issued tokens in the data directory
// (coordinator/auth.h); a running coordinator picks the change up at its next call.
int RunTokens(const std::string& action) {
  std::string data_dir = absl::GetFlag(FLAGS_data_dir);
  if (data_dir.empty()) data_dir = DefaultDataDir();
  const std::string path = absl::StrCat(data_dir, "/issued_tokens");
  if (action == "issue") {
    absl::StatusOr<Role> role = ParseRole(absl::GetFlag(FLAGS_role));
    if (!role.ok()) {
      Log(std::string(role.status().message()));
      return 2;
    }
    absl::StatusOr<std::string> token = IssueToken(path, absl::GetFlag(FLAGS_name), *role,
                                                   absl::GetFlag(FLAGS_ttl), *RealClock::Get());
    if (!token.ok()) {
      Log(std::string(token.status().message()));
      return absl::IsInvalidArgument(token.status()) ? 2 : 1;
    }
    std::cout << *token << std::endl;  // shown once: only its digest is kept
    return 0;
  }
  if (action == "revoke") {
    absl::Status revoked = RevokeToken(path, absl::GetFlag(FLAGS_name));
    if (!revoked.ok()) {
      Log(std::string(revoked.message()));
      return 1;
    }
    return 0;
  }
  if (action == "list") {
    absl::StatusOr<std::vector<IssuedToken>> tokens = ReadIssuedTokens(path);
    if (!tokens.ok()) {
      Log(std::string(tokens.status().message()));
      return 1;
    }
    const absl::Time now = absl::Now();
    for (const IssuedToken& token : *tokens) {
      std::cout << token.name << "\t" << RoleName(token.role) << "\t"
                << (token.expires == absl::InfiniteFuture()
                        ? "never"
                        : absl::FormatTime(absl::RFC3339_sec, token.expires, absl::UTCTimeZone()))
                << (token.expires <= now ? "\texpired" : "") << "\n";
    }
    return 0;
  }
  Log(absl::StrCat("tokens: expected issue, revoke or list, got '", action, "'"));
  return 2;
}

int Run() {
  std::string data_dir = absl::GetFlag(FLAGS_data_dir);
  if (data_dir.empty()) data_dir = DefaultDataDir();
  std::error_code error;
  std::filesystem::create_directories(data_dir, error);
  if (error) {
    Log(absl::StrCat("--data_dir: cannot create ", data_dir, ": ", error.message()));
    return 1;
  }
  data_dir = std::filesystem::absolute(data_dir).lexically_normal().string();
  if (!data_dir.empty() && data_dir.back() == '/') data_dir.pop_back();
  ::chmod(data_dir.c_str(), 0700);

  CoordinatorOptions options;
  options.heartbeat_interval = absl::GetFlag(FLAGS_heartbeat_interval);
  options.worker_timeout = absl::GetFlag(FLAGS_worker_timeout);
  options.cancel_grace = absl::GetFlag(FLAGS_cancel_grace);
  options.keep_checkpoints = absl::GetFlag(FLAGS_keep_checkpoints);
  options.default_max_restarts = absl::GetFlag(FLAGS_default_max_restarts);
  options.max_worker_gpus = absl::GetFlag(FLAGS_max_worker_gpus);
  options.max_worker_cpu_slots = absl::GetFlag(FLAGS_max_worker_cpu_slots);
  options.max_pending_jobs_per_user = absl::GetFlag(FLAGS_max_pending_jobs_per_user);
  options.scheduler.reservation_after = absl::GetFlag(FLAGS_reservation_after);
  if (absl::Status valid = options.Validate(); !valid.ok()) {
    Log(std::string(valid.message()));
    return 2;
  }

  SqliteJobStore::Options store_options;
  store_options.path = absl::StrCat(data_dir, "/state.db");
  absl::StatusOr<std::unique_ptr<SqliteJobStore>> store = SqliteJobStore::Open(store_options);
  if (!store.ok()) {
    Log(store.status().ToString());
    return 1;
  }
  CheckpointFileStore::Options checkpoint_options;
  checkpoint_options.data_dir = data_dir;
  checkpoint_options.max_checkpoint_bytes = absl::GetFlag(FLAGS_max_checkpoint_bytes);
  checkpoint_options.max_files_per_checkpoint = absl::GetFlag(FLAGS_max_checkpoint_files);
  checkpoint_options.min_free_bytes = absl::GetFlag(FLAGS_min_free_disk_bytes);
  checkpoint_options.max_open_uploads = absl::GetFlag(FLAGS_max_open_uploads);
  checkpoint_options.upload_idle_timeout = absl::GetFlag(FLAGS_upload_idle_timeout);
  absl::StatusOr<std::unique_ptr<CheckpointFileStore>> checkpoints =
      CheckpointFileStore::Open(checkpoint_options);
  if (!checkpoints.ok()) {
    Log(checkpoints.status().ToString());
    return 1;
  }
  absl::StatusOr<std::string> user_token = LoadOrCreateToken(data_dir + "/user.token");
  absl::StatusOr<std::string> worker_token = LoadOrCreateToken(data_dir + "/worker.token");
  if (!user_token.ok() || !worker_token.ok()) {
    Log((user_token.ok() ? worker_token.status() : user_token.status()).ToString());
    return 1;
  }

  TrainerSpecValidator::Options validator_options;
  validator_options.trainer_binary = absl::GetFlag(FLAGS_trainer);
  if (validator_options.trainer_binary.empty()) validator_options.trainer_binary = DefaultTrainer();
  validator_options.allowed_roots = absl::GetFlag(FLAGS_allowed_roots);
  validator_options.pool_size = absl::GetFlag(FLAGS_validators);
  validator_options.timeout = absl::GetFlag(FLAGS_validate_timeout);
  if (absl::Status valid = validator_options.Validate(); !valid.ok()) {
    Log(absl::StrCat("--allowed_roots/--trainer/--validators/--validate_timeout: ",
                     valid.message()));
    return 2;
  }
  TrainerSpecValidator validator(validator_options);

  TlsFiles tls_files;
  tls_files.cert = absl::GetFlag(FLAGS_tls_cert);
  tls_files.key = absl::GetFlag(FLAGS_tls_key);
  tls_files.ca = absl::GetFlag(FLAGS_tls_client_ca);
  tls_files.ca_flag = "--tls_client_ca";
  if (!tls_files.ca.empty() && !tls_files.has_identity()) {
    Log("--tls_client_ca: needs --tls_cert and --tls_key (mutual TLS is TLS first)");
    return 2;
  }
  absl::StatusOr<TlsMaterial> tls_material = LoadTlsFiles(tls_files);
  if (!tls_material.ok()) {
    Log(std::string(tls_material.status().message()));
    return 2;
  }
  const bool tls = tls_files.has_identity();
  const bool mutual_tls = !tls_files.ca.empty();
  std::shared_ptr<grpc::ServerCredentials> credentials = grpc::InsecureServerCredentials();
  if (tls) {
    grpc::SslServerCredentialsOptions ssl(mutual_tls
                                              ? GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY
                                              : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
    ssl.pem_key_cert_pairs.push_back({tls_material->private_key, tls_material->cert_chain});
    ssl.pem_root_certs = tls_material->root_certs;
    credentials = grpc::SslServerCredentials(ssl);
  }

  CoordinatorMetrics metrics;
  JobEventHub events;
  Coordinator coordinator(options, store->get(), checkpoints->get(), &validator, RealClock::Get(),
                          &events, &metrics);
  if (absl::Status recovered = coordinator.Recover(); !recovered.ok()) {
    Log(recovered.ToString());
    return 1;
  }

  TokenRegistry tokens(TokenRegistry::Options{
      *user_token, *worker_token, absl::StrCat(data_dir, "/issued_tokens"), RealClock::Get()});
  JobLogStoreOptions log_options;
  log_options.dir = absl::StrCat(data_dir, "/logs");
  log_options.max_bytes_per_log = absl::GetFlag(FLAGS_max_log_bytes);
  absl::StatusOr<std::unique_ptr<JobLogStore>> logs = JobLogStore::Open(log_options);
  if (!logs.ok()) {
    Log(std::string(logs.status().message()));
    return absl::IsInvalidArgument(logs.status()) ? 2 : 1;
  }
  JobServiceImpl job_service(&coordinator, &events, &tokens, logs->get());
  WorkerServiceImpl worker_service(&coordinator, &tokens, logs->get(),
                                   /*require_client_certificate=*/mutual_tls);
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  absl::StatusOr<std::map<std::string, RpcFault>> rpc_faults =
      ParseRpcFaults(absl::GetFlag(FLAGS_rpc_faults), CoordinatorRpcMethods());
  if (!rpc_faults.ok()) {
    Log(absl::StrCat("--rpc_faults: ", rpc_faults.status().message()));
    return 2;
  }
  RpcFaultPlan rpc_fault_plan(*std::move(rpc_faults));
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> creators;
  creators.push_back(std::make_unique<RpcMetricsInterceptorFactory>(&metrics));
  if (!rpc_fault_plan.empty()) {
    Log(absl::StrCat("RPC FAULT INJECTION armed: ", absl::GetFlag(FLAGS_rpc_faults)));
    creators.push_back(std::make_unique<RpcFaultInterceptorFactory>(&rpc_fault_plan));
  }
  builder.experimental().SetInterceptorCreators(std::move(creators));
  int port = 0;
  const std::string listen = absl::GetFlag(FLAGS_listen);
  if (!tls && !IsLoopbackListenAddress(listen)) {
    Log(absl::StrCat("WARNING: --listen ", listen,
                     " accepts other machines and TLS is off: bearer tokens and checkpoints "
                     "travel in clear text; give --tls_cert and --tls_key"));
  }
  builder.AddListeningPort(listen, credentials, &port);
  builder.SetMaxReceiveMessageSize(absl::GetFlag(FLAGS_max_message_bytes));
  builder.RegisterService(&job_service);
  builder.RegisterService(&worker_service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    Log(absl::StrCat("--listen: cannot listen on ", listen));
    return 1;
  }
  server->GetHealthCheckService()->SetServingStatus(true);
  std::string host = listen.substr(0, listen.rfind(':'));
  if (host.empty() || host == "0.0.0.0" || host == "[::]") host = "127.0.0.1";
  const std::string address = absl::StrCat(host, ":", port);
  if (absl::Status written = WriteFileAtomic(data_dir + "/coordinator.addr", address + "\n");
      !written.ok()) {
    Log(written.ToString());
    return 1;
  }

  std::unique_ptr<prometheus::Exposer> exposer;
  const std::string metrics_listen = absl::GetFlag(FLAGS_metrics_listen);
  if (!metrics_listen.empty()) {
    try {
      exposer = std::make_unique<prometheus::Exposer>(metrics_listen);
      exposer->RegisterCollectable(metrics.registry());
      std::vector<int> ports = exposer->GetListeningPorts();
      const std::string metrics_address =
          absl::StrCat(metrics_listen.substr(0, metrics_listen.rfind(':')), ":",
                       ports.empty() ? 0 : ports.front());
      Log(absl::StrCat("metrics on http://", metrics_address, "/metrics"));
      WriteFileAtomic(data_dir + "/metrics.addr", metrics_address + "\n").IgnoreError();
    } catch (const std::exception& e) {
      Log(absl::StrCat("--metrics_listen: cannot listen on ", metrics_listen, ": ", e.what()));
      return 1;
    }
  }
  Log(absl::StrCat("listening on ", address,
                   mutual_tls ? " (TLS, workers need a client certificate)"
                   : tls      ? " (TLS)"
                              : " (plaintext)",
                   ", data in ", data_dir, ", configs checked by ",
                   validator_options.trainer_binary));

  std::atomic<bool> stopping{false};
  std::thread ticker([&] {
    while (!stopping.load()) {
      // A pass that stopped at its placement limit continues after a short pause (which lets
      // the heartbeats that waited for it in).
      absl::SleepFor(coordinator.Tick() ? absl::Milliseconds(5) : absl::Milliseconds(250));
    }
  });

  // Wait for SIGTERM or SIGINT (blocked in every thread, taken here).
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  int signal_number = 0;
  sigwait(&signals, &signal_number);
  Log(absl::StrCat("signal ", signal_number, ": shutting down"));
  events.Shutdown();
  (*logs)->Shutdown();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  stopping.store(true);
  ticker.join();
  Log("stopped");
  return 0;
}

}  // namespace
}  // namespace peco::coordinator

int main(int argc, char** argv) {
  peco::InstallStackDumpOnSigquit(argv[0]);  // `kill -QUIT` shows where every thread is
  // Block the shutdown signals before any thread starts, so only sigwait() receives them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);
  absl::FlagsUsageConfig usage_config;
  usage_config.version_string = [] {
    return absl::StrCat("peco-coordinator ", peco::kPecoVersion, " (commit ", peco::kPecoCommit,
                        ")\n");
  };
  absl::SetFlagsUsageConfig(usage_config);
  absl::SetProgramUsageMessage(
      "peco-coordinator: the peco control plane. See docs/SERVICE.md.\n"
      "  peco-coordinator [--data_dir DIR] [--listen HOST:PORT] [--metrics_listen HOST:PORT]\n"
      "  peco-coordinator [--data_dir DIR] tokens issue --name NAME [--role user|admin|worker] "
      "[--ttl 2160h|inf]\n"
      "  peco-coordinator [--data_dir DIR] tokens revoke --name NAME\n"
      "  peco-coordinator [--data_dir DIR] tokens list");
  std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  // Deadlock detection (on in Debian's absl build) walks a lock graph on every Mutex
  // acquisition; the daemon takes its locks thousands of times a second. Tests keep it.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  if (rest.size() == 3 && std::string(rest[1]) == "tokens") {
    return peco::coordinator::RunTokens(rest[2]);
  }
  if (rest.size() > 1) {
    std::cerr << "peco-coordinator: unexpected argument '" << rest[1]
              << "' (the only command is 'tokens issue|revoke|list')\n";
    return 2;
  }
  return peco::coordinator::Run();
}
