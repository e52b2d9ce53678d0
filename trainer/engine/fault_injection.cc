#include "trainer/engine/fault_injection.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace peco::trainer {
namespace fs = std::filesystem;

bool FaultPlan::armed() const {
  return exit_at_step > 0 || hang_at_step > 0 || slow_step_ms > 0 || nan_loss_at_step > 0 ||
         corrupt_checkpoint_at_step > 0 || fail_checkpoint_at_step > 0;
}

absl::Status FaultPlan::Validate() const {
  auto non_negative = [](const char* field, int64_t value) -> absl::Status {
    if (value < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("faults.", field, ": expected >= 0 (0 = off), got ", value));
    }
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(non_negative("attempt", attempt));
  RETURN_IF_ERROR(non_negative("exit_at_step", exit_at_step));
  RETURN_IF_ERROR(non_negative("hang_at_step", hang_at_step));
  RETURN_IF_ERROR(non_negative("slow_step_ms", slow_step_ms));
  RETURN_IF_ERROR(non_negative("nan_loss_at_step", nan_loss_at_step));
  RETURN_IF_ERROR(non_negative("corrupt_checkpoint_at_step", corrupt_checkpoint_at_step));
  RETURN_IF_ERROR(non_negative("fail_checkpoint_at_step", fail_checkpoint_at_step));
  if (rank < -1) {
    return absl::InvalidArgumentError(
        absl::StrCat("faults.rank: expected a rank or -1 (every rank), got ", rank));
  }
  if (exit_code < 1 || exit_code > 255) {
    return absl::InvalidArgumentError(
        absl::StrCat("faults.exit_code: expected 1..255, got ", exit_code));
  }
  if (hang_in != "step" && hang_in != "collective" && hang_in != "checkpoint") {
    return absl::InvalidArgumentError(absl::StrCat(
        "faults.hang_in: expected step, collective or checkpoint, got '", hang_in, "'"));
  }
  return absl::OkStatus();
}

absl::Status ReadFaultsSection(ConfigReader& r, FaultPlan* plan) {
  RETURN_IF_ERROR(r.Read("attempt", &plan->attempt));
  RETURN_IF_ERROR(r.Read("rank", &plan->rank));
  RETURN_IF_ERROR(r.Read("exit_at_step", &plan->exit_at_step));
  RETURN_IF_ERROR(r.Read("exit_code", &plan->exit_code));
  RETURN_IF_ERROR(r.Read("hang_at_step", &plan->hang_at_step));
  RETURN_IF_ERROR(r.ReadEnum("hang_in", {"step", "collective", "checkpoint"}, &plan->hang_in));
  RETURN_IF_ERROR(r.Read("slow_step_ms", &plan->slow_step_ms));
  RETURN_IF_ERROR(r.Read("nan_loss_at_step", &plan->nan_loss_at_step));
  RETURN_IF_ERROR(r.Read("corrupt_checkpoint_at_step", &plan->corrupt_checkpoint_at_step));
  RETURN_IF_ERROR(r.Read("fail_checkpoint_at_step", &plan->fail_checkpoint_at_step));
  RETURN_IF_ERROR(r.Finish());
  return plan->Validate();
}

absl::StatusOr<FaultPlan> ParseFaultPlan(const std::string& text, const std::string& source) {
  ASSIGN_OR_RETURN(ConfigReader reader, ConfigReader::FromString(text, source));
  FaultPlan plan;
  RETURN_IF_ERROR(ReadFaultsSection(reader, &plan));
  return plan;
}

absl::Status FaultInjector::Configure(const FaultPlan& plan, int64_t attempt, int rank) {
  plan_ = plan;
  if (const char* env = std::getenv("PECO_FAULTS"); env != nullptr && *env != '\0') {
    ASSIGN_OR_RETURN(plan_, ParseFaultPlan(env, "PECO_FAULTS"));
  }
  const bool this_attempt = plan_.attempt == 0 || plan_.attempt == attempt;
  const bool this_rank = plan_.rank == -1 || plan_.rank == rank;
  armed_ = plan_.armed() && this_attempt && this_rank;
  if (armed_) {
    std::fprintf(stderr,
                 "peco-train: FAULT INJECTION armed for attempt %lld rank %d: exit_at_step %lld "
                 "(code %d), hang_at_step %lld in %s, slow_step_ms %lld, nan_loss_at_step %lld, "
                 "corrupt_checkpoint_at_step %lld, fail_checkpoint_at_step %lld\n",
                 static_cast<long long>(attempt), rank, static_cast<long long>(plan_.exit_at_step),
                 plan_.exit_code, static_cast<long long>(plan_.hang_at_step), plan_.hang_in.c_str(),
                 static_cast<long long>(plan_.slow_step_ms),
                 static_cast<long long>(plan_.nan_loss_at_step),
                 static_cast<long long>(plan_.corrupt_checkpoint_at_step),
                 static_cast<long long>(plan_.fail_checkpoint_at_step));
  }
  return absl::OkStatus();
}

void FaultInjector::Hang(const char* where, int64_t completed_steps) {
  std::fprintf(stderr, "peco-train: FAULT INJECTION: hanging %s after step %lld\n", where,
               static_cast<long long>(completed_steps));
  std::fflush(stdout);
  std::fflush(stderr);
  for (;;) std::this_thread::sleep_for(std::chrono::hours(1));
}

void FaultInjector::BeforeStep(int64_t completed_steps) {
  if (!armed()) return;
  current_step_ = completed_steps;
  if (plan_.exit_at_step > 0 && completed_steps == plan_.exit_at_step) {
    std::fprintf(stderr, "peco-train: FAULT INJECTION: exiting with %d after step %lld\n",
                 plan_.exit_code, static_cast<long long>(completed_steps));
    std::fflush(stdout);
    std::fflush(stderr);
    std::_Exit(plan_.exit_code);  // no destructors, no final checkpoint: as a crash
  }
  if (plan_.hang_at_step > 0 && completed_steps == plan_.hang_at_step && plan_.hang_in == "step") {
    Hang("before the step", completed_steps);
  }
  if (plan_.slow_step_ms > 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(plan_.slow_step_ms));
  }
}

void FaultInjector::InCollective() {
  if (!armed()) return;
  const int64_t step = current_step_;
  if (plan_.hang_at_step > 0 && step == plan_.hang_at_step && plan_.hang_in == "collective") {
    Hang("before the gradient all-reduce", step);
  }
}

absl::Status FaultInjector::InCheckpointWrite(int64_t step) {
  if (!armed()) return absl::OkStatus();
  if (plan_.hang_at_step > 0 && step == plan_.hang_at_step && plan_.hang_in == "checkpoint") {
    Hang("inside the checkpoint write", step);
  }
  if (plan_.fail_checkpoint_at_step > 0 && step == plan_.fail_checkpoint_at_step) {
    std::fprintf(stderr, "peco-train: FAULT INJECTION: failing the checkpoint of step %lld\n",
                 static_cast<long long>(step));
    return absl::ResourceExhaustedError(
        "injected fault (faults.fail_checkpoint_at_step): No space left on device");
  }
  return absl::OkStatus();
}

bool FaultInjector::NanLoss(int64_t completed_steps) const {
  return armed() && plan_.nan_loss_at_step > 0 && completed_steps == plan_.nan_loss_at_step;
}

void FaultInjector::AfterCheckpointCommit(int64_t step, const std::string& dir) {
  if (!armed() || plan_.corrupt_checkpoint_at_step == 0 ||
      step != plan_.corrupt_checkpoint_at_step) {
    return;
  }
  std::error_code error;
  fs::path largest;
  uintmax_t largest_size = 0;
  for (const auto& entry : fs::directory_iterator(dir, error)) {
    const uintmax_t size = entry.is_regular_file(error) ? entry.file_size(error) : 0;
    if (entry.path().filename() != "MANIFEST" && size > largest_size) {
      largest = entry.path();
      largest_size = size;
    }
  }
  if (largest.empty()) return;
  std::fstream file(largest, std::ios::in | std::ios::out | std::ios::binary);
  file.seekg(static_cast<std::streamoff>(largest_size / 2));
  char byte = 0;
  file.read(&byte, 1);
  byte = static_cast<char>(byte ^ 0x5a);
  file.seekp(static_cast<std::streamoff>(largest_size / 2));
  file.write(&byte, 1);
  file.close();
  std::fprintf(stderr, "peco-train: FAULT INJECTION: corrupted %s of the checkpoint of step %lld\n",
               largest.c_str(), static_cast<long long>(step));
}

FaultInjector& Faults() {
  static FaultInjector* injector = new FaultInjector();
  return *injector;
}

}  // namespace peco::trainer
