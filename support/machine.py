"""The CPU this runs on, as /proc/cpuinfo describes it: its model name and its feature flags."""
import platform


def cpu_model_and_flags():
    """(model name, set of feature flags); the platform's processor name and no flags where /proc/cpuinfo
    cannot be read."""
    model, flags = platform.processor() or 'unknown', set()
    try:
        with open('/proc/cpuinfo') as file:
            for line in file:
                if line.startswith('model name') and model in ('unknown', platform.processor()):
                    model = line.split(':', 1)[1].strip()
                elif line.startswith('flags'):
                    flags = set(line.split(':', 1)[1].split())
    except OSError:
        pass
    return model, flags


def cpu_supports_bfloat16():
    """True where the CPU has bfloat16 arithmetic (AVX-512 BF16 or AMX); elsewhere bfloat16 is emulated, slowly."""
    flags = cpu_model_and_flags()[1]
    return 'avx512_bf16' in flags or 'amx_bf16' in flags
