// The two long-lived read streams of the JobService, without the transport: watching a job
// (its history, then live events) and following its logs. rpc_services.cc adapts them to gRPC
// writers; tests can drive them with plain callbacks.
//
// A stream ends when the job reaches a terminal state (after its last event or bytes are
// sent), when `sink` returns false (the client went away: OK, nothing more to send), when
// `cancelled` returns true (Cancelled), or when the coordinator shuts down (Unavailable).
//
// Thread-safety: each call serves one stream on the calling thread; the borrowed coordinator,
// event hub and log store are thread-safe and must outlive the call.
#ifndef PECO_COORDINATOR_JOB_STREAMS_H_
#define PECO_COORDINATOR_JOB_STREAMS_H_

#include <functional>

#include "absl/status/status.h"
#include "coordinator/coordinator.h"
#include "coordinator/job_event_hub.h"
#include "coordinator/job_log_store.h"
#include "peco/v1/job.pb.h"

namespace peco::coordinator {

// Sends the job's current state (or, with include_history, its whole history) and then its live
// events. A metric point is sent once per (attempt, rank, step), whether it came from the
// history or live. Errors: those of Coordinator::JobHistory (NotFound for an unknown job);
// Unavailable when the event hub shuts down. `sink` returning false ends the stream with OK.
absl::Status WatchJobEvents(Coordinator& coordinator, JobEventHub& events,
                            const v1::WatchJobRequest& request,
                            const std::function<bool(const v1::WatchJobEvent&)>& sink,
                            const std::function<bool()>& cancelled);

// Sends the stored logs of the job that match the request (an attempt, ranks), each from its
// start in pieces of at most `piece_bytes`; with `follow`, then new bytes as they arrive until
// the job is terminal (its last attempt's logs complete). Errors: NotFound for an unknown job,
// the log store's errors, Cancelled when `cancelled` or `sink` says so, Unavailable when the
// log store shuts down.
absl::Status FollowJobLogs(Coordinator& coordinator, JobLogStore& logs,
                           const v1::StreamLogsRequest& request, int64_t piece_bytes,
                           const std::function<bool(v1::StreamLogsResponse)>& sink,
                           const std::function<bool()>& cancelled);

}  // namespace peco::coordinator

#endif  // PECO_COORDINATOR_JOB_STREAMS_H_
