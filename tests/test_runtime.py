"""vqbet.runtime: the allocator setting the entry-point scripts apply."""

import subprocess
import sys
import textwrap

import pytest

from vqbet.runtime import retain_freed_memory


@pytest.mark.parametrize(("mmap_mb", "trim_mb"), [(0, 1024), (512, 256), (256, 4096)])
def test_retain_freed_memory_refuses_bad_thresholds(mmap_mb, trim_mb):
    with pytest.raises(ValueError, match=rf"got {mmap_mb} and {trim_mb}"):
        retain_freed_memory(mmap_mb, trim_mb)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_retain_freed_memory_stops_page_faults_on_reallocation():
    """Tensors above glibc's largest dynamic mmap threshold (32 MB) are mapped fresh on every
    allocation and zero-filled page by page on first touch; once freed memory is retained, a second
    allocation reuses the first one's pages (in a fresh process: the setting is process-wide)."""
    code = textwrap.dedent(
        """
        import resource, torch
        from vqbet.runtime import retain_freed_memory

        def faults():
            step = [torch.ones(10 << 20) for _ in range(3)]  # 3 x 40 MB, as one step's activations
            del step
            start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            for _ in range(5):
                step = [torch.ones(10 << 20) for _ in range(3)]
                del step
            return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start

        before = faults()
        applied = retain_freed_memory()
        print(before, applied, faults())
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    before, applied, after = out.stdout.split()
    if applied != "True":
        pytest.skip("not glibc: nothing to retain")
    assert int(before) > 5 * 3 * 9000  # ~10,000 pages of 4 KB per 40 MB tensor
    assert int(after) < int(before) / 5
