#include "meta/node.h"

#include <sys/stat.h>

#include <memory>
#include <vector>

#include "gtest/gtest.h"
#include "meta/kmem.h"
#include "vm/address_space.h"
#include "vm/pager.h"
#include "vm/vm.h"

namespace ptmpfs::meta {
namespace {

class NodeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    vm::VmOptions options;
    options.ram_bytes = 64 * vm::kPageSize;
    options.swap.size_bytes = 64 << 20;
    vm_ = *vm::Vm::Create(options);
    space_ = *vm::Map::CreateAddressSpace(*vm_, uint64_t{1} << 32, uint64_t{1} << 46);
    kmem_ = *Kmem::Create(*space_);
    nodes_ = *NodeStore::Create(*space_, *kmem_);
  }
  void TearDown() override {
    nodes_.reset();
    kmem_.reset();
    space_.reset();
    vm_.reset();
  }
  std::unique_ptr<vm::Vm> vm_;
  std::unique_ptr<vm::Map> space_;
  std::unique_ptr<Kmem> kmem_;
  std::unique_ptr<NodeStore> nodes_;
};

TEST_F(NodeTest, TheFirstNodeIsInodeOne) {
  Addr root = *nodes_->Alloc(S_IFDIR | 0755, 0, 0, 1);
  EXPECT_EQ(nodes_->InoOf(root), kRootIno);
  EXPECT_EQ(nodes_->AddrOf(kRootIno), root);
  auto pin = *nodes_->Pin(root, vm::Access::kRead);
  EXPECT_EQ(pin->nlink, 2u);
  EXPECT_EQ(pin->dir.index.count, 0u);
}

TEST_F(NodeTest, InodeNumbersConvertBothWaysWithoutATable) {
  std::vector<Addr> all;
  for (int i = 0; i < 10000; ++i) all.push_back(*nodes_->Alloc(S_IFREG | 0644, 1, 2, i));
  for (Addr node : all) {
    Ino ino = nodes_->InoOf(node);
    EXPECT_EQ(nodes_->AddrOf(ino), node);
    EXPECT_EQ(*nodes_->ResolveIno(ino), node);
  }
  // 10,000 nodes of 128 bytes: 313 pages, far more than the 64 frames.
  EXPECT_GT(vm_->ReadStats().pageouts, 0u);
}

TEST_F(NodeTest, AReusedNumberHasANewGenerationAndOldHandlesAreStale) {
  Addr first = *nodes_->Alloc(S_IFREG | 0644, 0, 0, 0);
  const Ino ino = nodes_->InoOf(first);
  const uint64_t old_generation = (*nodes_->Pin(first, vm::Access::kRead))->generation;
  nodes_->Free(first);
  EXPECT_EQ(nodes_->ResolveIno(ino).status().code(), absl::StatusCode::kNotFound);
  Addr second = *nodes_->Alloc(S_IFREG | 0644, 0, 0, 0);
  ASSERT_EQ(nodes_->InoOf(second), ino);  // the slot is reused
  EXPECT_EQ(nodes_->ResolveIno(ino, old_generation).status().code(), absl::StatusCode::kNotFound);
  const uint64_t new_generation = (*nodes_->Pin(second, vm::Access::kRead))->generation;
  EXPECT_NE(new_generation, old_generation);
  EXPECT_EQ(*nodes_->ResolveIno(ino, new_generation), second);
}

TEST_F(NodeTest, GarbageInodeNumbersAreNotFoundNotCrashes) {
  for (Ino ino : {Ino{0}, Ino{2}, Ino{12345678}, ~Ino{0}, Ino{1} << 60}) {
    EXPECT_EQ(nodes_->ResolveIno(ino).status().code(), absl::StatusCode::kNotFound) << ino;
  }
}

TEST_F(NodeTest, FreeReleasesTheSymlinkTarget) {
  const uint64_t charged = vm_->accounting().charged();
  Addr link = *nodes_->Alloc(S_IFLNK | 0777, 0, 0, 0);
  const std::string target(4095, 't');
  {
    auto pin = *nodes_->Pin(link, vm::Access::kWrite);
    pin->symlink.target = *kmem_->StoreBlob(target);
    pin->size = target.size();
  }
  nodes_->Free(link);
  nodes_->pool().Reap();
  EXPECT_LE(vm_->accounting().charged(), charged + 8);
}

}  // namespace
}  // namespace ptmpfs::meta
