// ClusterView: the coordinator's in-memory picture of the cluster, in one place — the workers
// (their record and last heartbeat), the active attempts (jobs in ASSIGNED or RUNNING with their
// current attempt), which workers host which attempts, the devices those attempts hold on each
// worker, and the rendezvous ports they use. It is the one place the scheduler's view of capacity
// is built (ClusterSnapshot.workers: LendCapacity / ReturnCapacity) and the one place a gang is
// checked against what the cluster could ever host (CheckGangFits).
//
// It holds no durable state: the Coordinator rebuilds it from the JobStore at Recover() and keeps
// it in step with every store write (coordinator.h, NOTE [what lives where]).
//
// Thread-safety: not thread-safe. The Coordinator owns one and calls it only under its mutex.
#ifndef PECO_COORDINATOR_CLUSTER_VIEW_H_
#define PECO_COORDINATOR_CLUSTER_VIEW_H_

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "coordinator/scheduler_policy.h"
#include "peco/v1/job.pb.h"
#include "peco/v1/worker.pb.h"

namespace peco::coordinator {

class ClusterView {
 public:
  struct Worker {
    v1::WorkerInfo info;
    absl::Time last_heartbeat;
  };
  struct Active {
    v1::Job job;
    v1::Attempt attempt;
  };
  struct Devices {
    int64_t gpus = 0;
    int64_t cpu_slots = 0;
  };

  ClusterView() = default;
  ClusterView(const ClusterView&) = delete;
  ClusterView& operator=(const ClusterView&) = delete;

  // ---- Workers ----
  // Adds or replaces a worker's record (registration, recovery).
  void PutWorker(v1::WorkerInfo info, absl::Time last_heartbeat);
  // Null for an unknown id.
  const Worker* FindWorker(const std::string& worker_id) const;
  // Records a heartbeat and the devices the worker reports free; null for an unknown id.
  const Worker* NoteHeartbeat(const std::string& worker_id, absl::Time now,
                              const v1::WorkerDevices& free_devices);
  // Changes a worker's state; false for an unknown id.
  bool SetWorkerState(const std::string& worker_id, v1::WorkerState state);
  // Every known worker, by id.
  const std::map<std::string, Worker>& workers() const { return workers_; }

  // ---- Active attempts ----
  // Makes `active` the job's active attempt (replacing any), holding its devices on the workers
  // it is placed on.
  void SetActive(const std::string& job_id, Active active);
  // Forgets the job's active attempt and releases its devices; a job without one is a no-op.
  void EraseActive(const std::string& job_id);
  // The job's active attempt, or null.
  const Active* FindActive(const std::string& job_id) const;
  Active* FindActive(const std::string& job_id);
  // The job's active attempt when it is attempt number `attempt`, else null (a report of an
  // older attempt).
  const Active* FindCurrent(const std::string& job_id, int64_t attempt) const;
  // Every active attempt, by job id.
  const std::map<std::string, Active>& active() const { return active_; }
  // The jobs with an active attempt placed (in part) on `worker_id`; empty when none.
  const std::set<std::string>& ActiveOn(const std::string& worker_id) const;
  // Devices the active attempts hold on `worker_id`.
  Devices HeldOn(const std::string& worker_id) const;

  // ---- Placement ----
  // A rendezvous port in `worker`'s range used neither by an active attempt whose rank 0 runs
  // there nor in `also_taken`; 0 when there is none.
  int32_t PickMasterPort(const std::string& worker_id, const std::set<int32_t>& also_taken) const;

  // Moves the alive workers, with their total and free devices, into `*out` (id order), and
  // sets `*any_free` when some worker has a free device. The list is cached between passes and
  // rebuilt only after a worker joined or changed state; give it back with ReturnCapacity (a
  // list not given back is rebuilt on the next call).
  void LendCapacity(std::vector<WorkerCapacity>* out, bool* any_free);
  void ReturnCapacity(std::vector<WorkerCapacity>&& capacity);

  // FailedPrecondition naming spec.world_size when the registered, not dead workers could never
  // host the whole gang at once, even idle. OK when no worker has registered yet.
  absl::Status CheckGangFits(const v1::JobSpec& spec) const;

 private:
  std::map<std::string, Worker> workers_;
  std::map<std::string, Active> active_;
  // Worker id -> the jobs of active_ with ranks on it (heartbeats look at their own only).
  std::map<std::string, std::set<std::string>> active_by_worker_;
  // Worker id -> the devices active_ holds on it (absent: none).
  std::map<std::string, Devices> held_;
  // The alive workers in id order with their total devices. Rebuilt only after a worker joined
  // or changed state: submits run a pass each, and rebuilding it was most of a pass's cost at
  // 1,000 workers.
  std::vector<WorkerCapacity> capacity_cache_;
  bool capacity_cache_valid_ = false;
  bool capacity_lent_ = false;       // between LendCapacity and ReturnCapacity
  bool changed_while_lent_ = false;  // a worker joined or changed state meanwhile

  void InvalidateCapacity();
};

}  // namespace peco::coordinator

#endif  // PECO_COORDINATOR_CLUSTER_VIEW_H_
