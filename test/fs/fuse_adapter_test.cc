// fuse_adapter_test: the FUSE adapter's handlers called directly, with libfuse's
// request and reply functions replaced by this file's (the executable's definitions
// take precedence over libfuse3.so's), so that a reply can be made to fail as it does
// when the kernel dropped an interrupted request.
#define FUSE_USE_VERSION 312
#include "fs/fuse_adapter.h"

#include <fuse_lowlevel.h>
#include <sys/stat.h>

#include <cerrno>
#include <memory>

#include "fs/tmpfs.h"
#include "gtest/gtest.h"
#include "test/fs/test_tmpfs.h"

namespace {

// What the replaced libfuse functions see and do.
struct FakeSession {
  ptmpfs::fs::FuseAdapter* adapter = nullptr;
  fuse_ctx context{};
  int reply_result = 0;  // what fuse_reply_* return: -ENOENT for an interrupted request
  int replies = 0;
  int last_error = -1;
};
FakeSession session;

// Any non-null pointer will do: only the functions below look at it.
fuse_req_t FakeRequest() { return reinterpret_cast<fuse_req_t>(&session); }

}  // namespace

extern "C" {

void* fuse_req_userdata(fuse_req_t) { return session.adapter; }
const struct fuse_ctx* fuse_req_ctx(fuse_req_t) { return &session.context; }
int fuse_reply_entry(fuse_req_t, const struct fuse_entry_param*) {
  ++session.replies;
  return session.reply_result;
}
int fuse_reply_err(fuse_req_t, int err) {
  ++session.replies;
  session.last_error = err;
  return session.reply_result;
}
int fuse_reply_buf(fuse_req_t, const char*, size_t) {
  ++session.replies;
  return session.reply_result;
}
size_t fuse_add_direntry_plus(fuse_req_t, char*, size_t, const char*,
                              const struct fuse_entry_param*, off_t) {
  return 64;  // a fixed entry size: room for every entry of these small directories
}

}  // extern "C"

namespace ptmpfs::fs {
namespace {

constexpr Caller kRoot{};

class FuseAdapterTest : public ::testing::Test {
 protected:
  FuseAdapterTest() {
    fs_ = MakeTestTmpfs(uint64_t{64} << 20);
    adapter_ = std::make_unique<FuseAdapter>(*fs_, FuseAdapter::Options{});
    session = FakeSession{};
    session.adapter = adapter_.get();
  }
  ~FuseAdapterTest() override { session = FakeSession{}; }

  uint64_t LookupCount(Ino ino) {
    auto pin = fs_->nodes().Pin(fs_->nodes().AddrOf(ino), vm::Access::kRead);
    EXPECT_TRUE(pin.ok()) << pin.status();
    return pin.ok() ? (*pin)->lookup_count : ~uint64_t{0};
  }
  Ino MakeFile(absl::string_view name) {
    absl::StatusOr<Attr> attr = fs_->Mknod(kRoot, kRootIno, name, S_IFREG | 0644, 0);
    EXPECT_TRUE(attr.ok()) << attr.status();
    return attr.ok() ? attr->ino : 0;
  }

  const fuse_lowlevel_ops& ops_ = FuseAdapter::Ops();
  std::unique_ptr<Tmpfs> fs_;
  std::unique_ptr<FuseAdapter> adapter_;
};

TEST_F(FuseAdapterTest, AnEntryReplyTheKernelNeverTookCountsNoLookup) {
  const Ino file = MakeFile("f");  // one lookup, as the kernel's MKNOD reply carries
  ASSERT_EQ(LookupCount(file), 1u);

  session.reply_result = -ENOENT;
  ops_.lookup(FakeRequest(), kRootIno, "f");
  EXPECT_EQ(LookupCount(file), 1u) << "an interrupted LOOKUP's count is dropped";
  ops_.link(FakeRequest(), file, kRootIno, "hard");
  EXPECT_EQ(LookupCount(file), 1u) << "an interrupted LINK's count is dropped";
  ops_.mkdir(FakeRequest(), kRootIno, "d", 0755);
  absl::StatusOr<Attr> made = fs_->Lookup(kRootIno, "d");
  ASSERT_TRUE(made.ok()) << made.status();
  EXPECT_EQ(LookupCount(made->ino), 1u) << "only the Lookup just made counts";

  session.reply_result = 0;
  ops_.lookup(FakeRequest(), kRootIno, "f");
  EXPECT_EQ(LookupCount(file), 2u) << "a delivered reply keeps its count";
}

TEST_F(FuseAdapterTest, AnUnlinkedNodeIsFreedWhenItsOnlyLookupWasNeverDelivered) {
  session.reply_result = -ENOENT;
  ops_.mknod(FakeRequest(), kRootIno, "f", S_IFREG | 0644, 0);
  const uint64_t nodes = fs_->nodes().nodes();
  ASSERT_TRUE(fs_->Unlink(kRootIno, "f").ok());
  EXPECT_EQ(fs_->nodes().nodes(), nodes - 1) << "no lookup is left to keep it";
}

TEST_F(FuseAdapterTest, AReadDirPlusReplyTheKernelNeverTookCountsNoLookups) {
  const Ino a = MakeFile("a");
  const Ino b = MakeFile("b");
  session.reply_result = -ENOENT;
  ops_.readdirplus(FakeRequest(), kRootIno, 4096, 0, nullptr);
  EXPECT_EQ(LookupCount(a), 1u);
  EXPECT_EQ(LookupCount(b), 1u);

  session.reply_result = 0;
  ops_.readdirplus(FakeRequest(), kRootIno, 4096, 0, nullptr);
  EXPECT_EQ(LookupCount(a), 2u);
  EXPECT_EQ(LookupCount(b), 2u);
}

}  // namespace
}  // namespace ptmpfs::fs
