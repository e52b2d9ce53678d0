// ImageNet-style class folders: root/<class>/<file>.{jpg,jpeg,png}.
#ifndef PECO_TRAINER_DATA_IMAGE_FOLDER_H_
#define PECO_TRAINER_DATA_IMAGE_FOLDER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "trainer/data/dataset.h"
#include "trainer/data/image_codec.h"

namespace peco::trainer {

struct ImageFolderOptions {
  // JPEGs are decoded with DCT scaling at the smallest scale whose shorter side is still
  // >= min_decode_side (see DecodeJpeg). 0 decodes at full size. PNGs are always full size.
  int min_decode_side = 0;
  // What a file may be: larger files are refused before they are read, images over the pixel or
  // scan limits before they are decoded (image_codec.h).
  ImageLimits limits;
};

// Scans `root` once: every immediate sub-directory is a class (sorted by name; label = rank in
// that order), and every regular file below it (recursively) whose extension is .jpg, .jpeg or
// .png (case-insensitive) is a sample; samples are sorted by path. Errors name the path: a
// missing or unreadable root, or no images at all. Files are read and decoded on Get(); a file
// that cannot be read or decoded makes Get() return an error naming it. Thread-safe.
absl::StatusOr<std::unique_ptr<Dataset>> OpenImageFolder(const std::string& root,
                                                         ImageFolderOptions options = {});

}  // namespace peco::trainer

#endif  // PECO_TRAINER_DATA_IMAGE_FOLDER_H_
