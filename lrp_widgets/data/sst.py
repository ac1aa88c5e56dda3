"""Real sea surface temperature anomalies bundled with the ``eofs`` package (netCDF3, no download)."""
from __future__ import annotations

import importlib.resources
from dataclasses import dataclass

import numpy as np

__all__ = ["SeaSurfaceTemperature", "sst_anomalies", "nino34_box", "SST_RESOURCE"]

# Where eofs keeps the file inside its installed package.
SST_RESOURCE = ("eofs", "examples/example_data/sst_ndjfm_anom.nc")

# Nino 3.4 region: 5S-5N, 170W-120W, i.e. 190E-240E on a 0-360 longitude grid.
_NINO34_LATITUDE = (-5.0, 5.0)
_NINO34_LONGITUDE_EAST = (190.0, 240.0)


@dataclass(frozen=True)
class SeaSurfaceTemperature:
    """Winter (NDJFM) mean sea surface temperature anomalies on a Pacific grid.

    Attributes
    ----------
    values : np.ndarray
        Anomalies in K, shape (time, lat, lon), float64, NaN on land.
    ocean : np.ndarray
        (lat, lon) bool, True where the sea has data.
    lat, lon : np.ndarray
        Cell-centre latitudes (degrees north) and longitudes (degrees east, 0-360).
    time : np.ndarray
        The date of each winter, ``datetime64[D]``.
    """

    values: np.ndarray
    ocean: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    time: np.ndarray

    @property
    def nino34_mask(self) -> np.ndarray:
        """(lat, lon) bool: ocean cells inside the Nino 3.4 box."""
        return nino34_box(self.lat, self.lon) & self.ocean

    def nino34_index(self, standardize: bool = True) -> np.ndarray:
        """Nino 3.4 index of every winter: mean anomaly over the Nino 3.4 box (5N-5S, 170W-120W).

        With ``standardize`` the index is divided by its standard deviation over the record after
        removing its mean, as the El Nino (> 0.5) / La Nina (< -0.5) thresholds expect.
        """
        index = self.values[:, self.nino34_mask].mean(axis=1)
        if standardize:
            index = (index - index.mean()) / index.std()
        return index


def nino34_box(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """(lat, lon) bool: grid cells whose centre lies in 5S-5N, 170W-120W (any longitude convention)."""
    lon_east = np.mod(np.asarray(lon, dtype=float), 360.0)
    lat = np.asarray(lat, dtype=float)
    in_lat = (lat >= _NINO34_LATITUDE[0]) & (lat <= _NINO34_LATITUDE[1])
    in_lon = (lon_east >= _NINO34_LONGITUDE_EAST[0]) & (lon_east <= _NINO34_LONGITUDE_EAST[1])
    return in_lat[:, None] & in_lon[None, :]


def _days_since_to_dates(days: np.ndarray, units: str) -> np.ndarray:
    # CF time "days since YYYY-M-D hh:mm:ss" on the gregorian calendar; numpy's proleptic
    # gregorian dates agree with it after 1582, which covers this record (1800 onwards).
    prefix = "days since "
    if not units.startswith(prefix):
        raise ValueError(f"unexpected time units {units!r}; expected 'days since ...'")
    year, month, day = (int(part) for part in units[len(prefix):].split()[0].split("-"))
    origin = np.datetime64(f"{year:04d}-{month:02d}-{day:02d}", "D")
    return origin + np.floor(days).astype("timedelta64[D]")


def sst_anomalies() -> SeaSurfaceTemperature:
    """Load the 50 winters of Pacific SST anomalies that ship with ``eofs``.

    The file (``eofs/examples/example_data/sst_ndjfm_anom.nc``, netCDF3) stores land as 1e20;
    every value at or above 1e19 and every non-finite value becomes NaN here, so the fill value
    never reaches a model.

    Returns
    -------
    SeaSurfaceTemperature
        ``values`` (50, 18, 30) with NaN on land, ``ocean``, ``lat``, ``lon``, ``time``.

    Examples
    --------
    >>> sst = sst_anomalies()
    >>> sst.values.shape, sst.ocean.mean().round(2)
    """
    from scipy.io import netcdf_file

    package, relative = SST_RESOURCE
    try:
        resource = importlib.resources.files(package).joinpath(relative)
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            "the SST anomalies ship with the 'eofs' package, which is not installed; "
            "install it with `pip install eofs`"
        ) from error
    with importlib.resources.as_file(resource) as path:
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing from the installed 'eofs' package; reinstall eofs")
        # mmap=False and copies: the arrays must outlive the closed file.
        with netcdf_file(path, "r", mmap=False) as handle:
            variables = handle.variables
            sst = variables["sst"]
            values = np.array(sst[:], dtype=np.float64)
            missing = float(getattr(sst, "missing_value", 1e20))
            lat = np.array(variables["latitude"][:], dtype=np.float64)
            lon = np.array(variables["longitude"][:], dtype=np.float64)
            time_units = variables["time"].units.decode()
            days = np.array(variables["time"][:], dtype=np.float64)

    land = ~np.isfinite(values) | (np.abs(values) >= min(abs(missing), 1e19))
    values[land] = np.nan
    # A cell is ocean only if it has data in every winter (in this file land is fixed in time).
    ocean = ~land.any(axis=0)
    values[:, ~ocean] = np.nan
    return SeaSurfaceTemperature(
        values=values,
        ocean=ocean,
        lat=lat,
        lon=lon,
        time=_days_since_to_dates(days, time_units),
    )
