// The checkpoint contract on the wire: conversion between common/checkpoint_manifest.h's plain
// Manifest and the proto's ManifestEntry lists, and the receiving end of a FetchCheckpoint stream
// (the worker's fetch of a resume point or dependency, the CLI's `peco download`), both over
// common/checkpoint_receiver.h. The coordinator's upload sessions use the same receiver through
// AppendChunk.
//
// Thread-safety: the functions are pure or act on the receiver they are given (not
// thread-safe, like the receiver).
#ifndef PECO_SERVICE_CHECKPOINT_TRANSFER_H_
#define PECO_SERVICE_CHECKPOINT_TRANSFER_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/checkpoint_manifest.h"
#include "common/checkpoint_receiver.h"
#include "google/protobuf/repeated_field.h"
#include "peco/v1/checkpoint.pb.h"

namespace peco::service {

// The proto's entries as a Manifest, in their order and unchecked (ValidateManifest checks).
Manifest ManifestFromProto(const google::protobuf::RepeatedPtrField<v1::ManifestEntry>& entries);

// Replaces `*out` with the entries of `manifest`, in its order.
void ManifestToProto(const Manifest& manifest,
                     google::protobuf::RepeatedPtrField<v1::ManifestEntry>* out);

// Writes one chunk of a stream into `receiver` (CheckpointReceiver::Append's errors).
absl::Status AppendChunk(CheckpointReceiver& receiver, const v1::CheckpointChunk& chunk);

// Starts receiving the checkpoint `info` (its manifest known up front) bound for `dest`, staged
// in StagingDirFor(dest); creates dest's missing parent directories. Errors: InvalidArgument for a
// bad manifest (naming the checkpoint and the entry), AlreadyExists when `dest` exists and is not
// an empty directory, the file-system errors of CheckpointReceiver::Start.
absl::StatusOr<std::unique_ptr<CheckpointReceiver>> StartDownload(const v1::CheckpointInfo& info,
                                                                  const std::string& dest);

// Seals the received checkpoint against its manifest and publishes it at `dest`
// (CheckpointReceiver::Seal and Publish; on error nothing is left at `dest` that was not there).
absl::Status FinishDownload(CheckpointReceiver& receiver, const std::string& dest);

}  // namespace peco::service

#endif  // PECO_SERVICE_CHECKPOINT_TRANSFER_H_
