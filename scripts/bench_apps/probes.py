"""One-liners a service could reach on another day, none of them in the traced apps:
each runs in its own interpreter; prints one JSON object {probe: null or its error}.

    python probes.py      # with the prefix's bin/ first on PATH
"""
import json
import subprocess
import sys

PROBES = {
    "multiprocessing.Pool": "import multiprocessing as m\n"
                            "with m.Pool(2) as p: assert p.map(abs, [-1, -2]) == [1, 2]",
    "ProcessPoolExecutor": "from concurrent.futures import ProcessPoolExecutor as P\n"
                           "with P(2) as e: assert list(e.map(abs, [-1])) == [1]",
    "email.mime": "import email.mime.text as t; t.MIMEText('hi')",
    "logging.handlers": "import logging.handlers",
    "xml.dom.minidom": "import xml.dom.minidom as d; d.parseString('<a/>')",
    "http.cookies": "import http.cookies as c; c.SimpleCookie('a=1')",
    "json.tool": "import json.tool",
    "codecs": "'é'.encode('latin-1'); 'é'.encode('cp1252'); 'x'.encode('utf-16'); "
              "'bücher.de'.encode('idna')",
    "zoneinfo": "import zoneinfo; zoneinfo.ZoneInfo('Asia/Tokyo')",
    "pandas tz": "import pandas as pd; pd.Timestamp('2024-01-01', tz='Europe/Paris')",
    "decimal": "import decimal; decimal.Decimal('1.1') + 1",
    "ssl": "import ssl; ssl.create_default_context()",
    "sha3_256": "import hashlib; hashlib.sha3_256(b'x').hexdigest()",
    "uuid": "import uuid; uuid.uuid4()",
    "asyncio subprocess": "import asyncio\nasync def f():\n"
                          "    p = await asyncio.create_subprocess_exec('true')\n"
                          "    assert await p.wait() == 0\nasyncio.run(f())",
    "xml.etree": "import xml.etree.ElementTree as E; E.fromstring('<a><b/></a>')",
    "pandas.read_json": "import io, pandas as pd; pd.read_json(io.StringIO('[{\"a\": 1}]'))",
    "read_csv latin-1": "import io, pandas as pd\n"
                        "pd.read_csv(io.BytesIO('a\\n\\xe9\\n'.encode('latin-1')), "
                        "encoding='latin-1')",
    "numpy.linalg.svd": "import numpy as np; np.linalg.svd(np.eye(3))",
    "numpy.fft": "import numpy as np; np.fft.fft(np.ones(8))",
    "random forest": "from sklearn.ensemble import RandomForestClassifier as R\n"
                     "R(n_estimators=3).fit([[0], [1]], [0, 1])",
    "scipy.stats": "from scipy import stats; stats.norm.cdf(0)",
    "PIL TIFF (table)": "import io; from PIL import Image\n"
                        "b = io.BytesIO(); Image.new('L', (2, 2)).save(b, 'TIFF'); "
                        "Image.open(io.BytesIO(b.getvalue())).load()",
    "scipy.signal (lazy)": "import numpy, scipy; scipy.signal.welch(numpy.arange(16.0))",
}


def main() -> int:
    results = {}
    for name, code in PROBES.items():
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              check=False, timeout=300)
        tail = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        results[name] = None if done.returncode == 0 else tail
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
