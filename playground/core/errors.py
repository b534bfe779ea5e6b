"""Errors the UI shows to the user as a readable message (never a traceback)."""


class UserInputError(ValueError):
    """A request parameter is invalid; the message says what to change."""


class ModelLoadError(RuntimeError):
    """A model could not be found or loaded; the message names the cause."""


def check_range(name: str, value, low, high, *, integer: bool = False):
    """Return ``value`` as int/float if ``low <= value <= high``, else raise UserInputError."""
    if value is None or value == "":
        raise UserInputError(f"{name} is required.")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UserInputError(f"{name} must be a number, got {value!r}.") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise UserInputError(f"{name} must be a finite number, got {value!r}.")
    if integer:
        if number != int(number):
            raise UserInputError(f"{name} must be a whole number, got {value!r}.")
        number = int(number)
    if not low <= number <= high:
        raise UserInputError(f"{name} must be between {low} and {high}, got {value!r}.")
    return number
