"""The data room of `envs`: parsers (MULAN/MEKA ARFF, XC/LIBSVM text, Reuters-21578 SGML), the
parsed-dataset cache, and the one in-memory form (`Dataset`, `Split`). Nothing here knows about
environments or policies.
"""

from labelchain.envs.data.dataset import Dataset, Features, Split
from labelchain.envs.data.errors import DataFormatError, DataNotFoundError
from labelchain.envs.data.loading import DATASET_NAMES, load_dataset

__all__ = ["DATASET_NAMES", "DataFormatError", "DataNotFoundError", "Dataset", "Features", "Split", "load_dataset"]
