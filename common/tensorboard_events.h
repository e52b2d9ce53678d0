// TensorBoard's event file format, written without a protobuf library (the trainer links none,
// DESIGN.md section 3): an event file is a sequence of records, each
//
//   uint64 length (little-endian) | uint32 masked CRC-32C of those 8 bytes |
//   `length` bytes: one serialised Event message | uint32 masked CRC-32C of them
//
// and its first record is an Event whose file_version is "brain.Event:2". The Event, Summary,
// Summary.Value, Summary.Image, SummaryMetadata and TensorProto messages are encoded here with
// TensorBoard's field numbers (the schema, as a .proto, is in tests/data/tensorboard/); the
// encoders write only the fields peco uses: scalars (simple_value), PNG images and text (a
// string tensor for the "text" plugin).
//
// Thread-safe: pure functions.
#ifndef PECO_COMMON_TENSORBOARD_EVENTS_H_
#define PECO_COMMON_TENSORBOARD_EVENTS_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace peco::tensorboard {

inline constexpr char kFileVersion[] = "brain.Event:2";

// One serialised Event each; `wall_time` in seconds since the Unix epoch.
std::string FileVersionEvent(double wall_time);
std::string ScalarEvent(double wall_time, int64_t step, absl::string_view tag, float value);
// `png` is an encoded PNG; its width, height and colour type come from its header.
// InvalidArgument when `png` is not a PNG.
absl::StatusOr<std::string> ImageEvent(double wall_time, int64_t step, absl::string_view tag,
                                       absl::string_view png);
std::string TextEvent(double wall_time, int64_t step, absl::string_view tag,
                      absl::string_view text);

// `event` framed as one record of an event file (see the top of this file).
std::string FrameRecord(absl::string_view event);

// The width, height and TensorBoard colorspace (1 grey, 2 grey+alpha, 3 RGB, 4 RGBA) of a PNG,
// from its IHDR chunk. InvalidArgument when `png` does not start with a PNG signature and IHDR.
struct PngHeader {
  int width = 0;
  int height = 0;
  int colorspace = 0;
};
absl::StatusOr<PngHeader> ReadPngHeader(absl::string_view png);

// The file name TensorBoard looks for: events.out.tfevents.<10-digit seconds>.<host>.<pid>.peco
std::string EventFileName(absl::Time created, absl::string_view host, int64_t pid);

// The scalar tag of a progress metric (docs/TRAINER.md "Progress events"): held-out metrics
// ("eval_top1", "validation_knn_top1_block_4") under eval/ without the eval_ prefix
// ("eval/top1", "eval/validation_knn_top1_block_4"); everything else under train/
// ("train/loss"). TensorBoard groups its charts by that first part.
std::string MetricTag(absl::string_view metric);

}  // namespace peco::tensorboard

#endif  // PECO_COMMON_TENSORBOARD_EVENTS_H_
